"""A robust online model of one univariate series: level, daily and weekly seasonality, deviation score.

River-style: ``learn_one(ts_ms, value)`` updates the model, ``score_one(ts_ms, value)`` says how
anomalous a value would be (0..1, higher is more anomalous) without changing anything. The
traffic detector runs one per subject and signal; ``warden score-series`` runs the same class on
any series, so what operators try on their own metrics is what the detector does.

How it works, in the transformed space ``y = asinh(value / unit)`` (linear near zero, logarithmic
for large values, so a count that doubles moves as far at 10/min as at 10,000/min):

- expected(ts) = level + shrunk hour-of-day offset + shrunk day-of-week offset. The offsets are
  kept mean-zero (their mean lives in the level), learn per unit of time (a minute series and an
  hourly one age alike), and are shrunk towards zero by ``w / (w + season_shrinkage)`` while
  their slot has seen few periods, so one odd Monday does not become the Monday profile.
- scale = EWMA of the absolute residual (a running mean absolute deviation), with a floor; one
  value moves it by at most ``SCALE_STEP_CAP`` × itself, so a surge or a ramp cannot quickly widen
  the band it is judged by.
- z = residual / (1.25 · scale): a robust z-score (1.25 · MAD ≈ σ for normal noise).
- Residuals are clipped at ``huber_z`` before they teach the model (Huber), so a surge does not
  become the new normal at once; a lasting step change is still absorbed at the slow rate.
- A CUSUM of z catches sustained shifts that no single point shows; its steps are deflated by the
  residuals' lag-1 autocorrelation, so a slowly wandering metric is not taken for a shift.
- The score is a logistic of max(z, CUSUM-equivalent z), centred on ``alarm_z`` (score 0.5);
  two-sided models take |z| and the downward CUSUM too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median
from typing import Any

HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
MS_PER_HOUR = 3_600_000
# 1970-01-01 was a Thursday: shift so that slot 0 is Monday.
_EPOCH_WEEKDAY = 3
_MAD_TO_SIGMA = 1.25
_COUNT_CAP = 1_000_000
SCALE_STEP_CAP = 2.0
AUTOCORRELATION_RATE = 0.25
"""The autocorrelation learns at this fraction of ``scale_alpha``."""


@dataclass(frozen=True, slots=True)
class SeasonalParams:
    """Hyper-parameters; the detector and score-series build them from ``TrafficAnomalyConfig``
    (``detectors.traffic.model_params``). The defaults here equal that config's."""

    level_alpha: float = 0.02
    season_alpha: float = 0.05
    scale_alpha: float = 0.02
    season_shrinkage: float = 2.0
    huber_z: float = 3.0
    cusum_drift: float = 1.5
    cusum_limit: float = 15.0
    alarm_z: float = 4.5
    score_slope: float = 1.5
    min_scale: float = 0.05
    warmup: int = 20
    two_sided: bool = True
    unit: float | None = 1.0
    """Divisor before asinh; ``None`` = learn it once from the median |value| of the warm-up values."""
    unit_fraction: float = 5.0
    """With a learned unit: the unit is this multiple of that median (the model is linear below the unit)."""


@dataclass(slots=True)
class SeasonalState:
    """Everything the model remembers, as JSON-able numbers (snapshot → restore is exact)."""

    n: int = 0
    level: float = 0.0
    scale: float = 0.0
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    last_z: float = 0.0
    lag_product: float = 0.0
    z_power: float = 0.0
    """EWMAs of z(t)·z(t−1) and z(t)²: their ratio is the residuals' lag-1 autocorrelation."""
    unit: float | None = None
    last_ts_ms: int | None = None
    pending: list[list[float]] = field(default_factory=list)
    """Warm-up (ts_ms, value) pairs held until a learned unit is known."""
    day: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_DAY)
    day_shift: float = 0.0
    """The hour-of-day offsets' mean, kept apart so that re-centring them is O(1): offset = day[h] − day_shift."""
    day_weight: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_DAY)
    """Days of data each hour-of-day slot has seen (a minute series adds 1/60 per point)."""
    week: list[float] = field(default_factory=lambda: [0.0] * DAYS_PER_WEEK)
    week_shift: float = 0.0
    week_weight: list[float] = field(default_factory=lambda: [0.0] * DAYS_PER_WEEK)
    """Weeks of data each day-of-week slot has seen."""

    def dump(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "level": self.level,
            "scale": self.scale,
            "cusum_up": self.cusum_up,
            "cusum_down": self.cusum_down,
            "last_z": self.last_z,
            "lag_product": self.lag_product,
            "z_power": self.z_power,
            "unit": self.unit,
            "last_ts_ms": self.last_ts_ms,
            "pending": [list(pair) for pair in self.pending],
            "day": list(self.day),
            "day_shift": self.day_shift,
            "day_weight": list(self.day_weight),
            "week": list(self.week),
            "week_shift": self.week_shift,
            "week_weight": list(self.week_weight),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> SeasonalState:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Prior:
    """Where a subject with little history is pulled to: a population level and scale (raw units)."""

    value: float
    scale: float


@dataclass(frozen=True, slots=True)
class Assessment:
    """What ``assess`` concludes about one value: the numbers a finding's evidence shows."""

    score: float
    z: float
    cusum_z: float
    expected: float
    """Expected value in the series' own units."""


def _slots(ts_ms: int) -> tuple[int, int]:
    hours = ts_ms // MS_PER_HOUR
    return int(hours % HOURS_PER_DAY), int((hours // HOURS_PER_DAY + _EPOCH_WEEKDAY) % DAYS_PER_WEEK)


def _shrink(weight: float, strength: float) -> float:
    return weight / (weight + strength)


class SeasonalModel:
    """The online model over one ``SeasonalState``; the state is the caller's (e.g. in a SubjectStore)."""

    def __init__(self, params: SeasonalParams, state: SeasonalState | None = None, prior: Prior | None = None) -> None:
        self.params = params
        self.state = state if state is not None else SeasonalState(unit=params.unit)
        self.prior = prior

    # --- transform -------------------------------------------------------------------------
    def _unit(self) -> float | None:
        return self.state.unit if self.params.unit is None else self.params.unit

    def _to_model(self, value: float, unit: float) -> float:
        return math.asinh(value / unit)

    def _from_model(self, y: float, unit: float) -> float:
        return math.sinh(y) * unit

    # --- the model -------------------------------------------------------------------------
    def _predict(self, ts_ms: int, unit: float, *, use_prior: bool = True) -> tuple[float, float, float]:
        """(expected, unshrunk expected, robust σ) in model units. Predictions shrink young seasonal offsets
        towards zero; the offsets learn from the unshrunk profile, so they converge to it, not overshoot."""
        st, p = self.state, self.params
        hour, weekday = _slots(ts_ms)
        day_offset, week_offset = st.day[hour] - st.day_shift, st.week[weekday] - st.week_shift
        profile = st.level + day_offset + week_offset
        expected = (
            st.level
            + _shrink(st.day_weight[hour], p.season_shrinkage) * day_offset
            + _shrink(st.week_weight[weekday], p.season_shrinkage) * week_offset
        )
        scale = st.scale
        if use_prior and self.prior is not None and st.n < p.warmup:
            # Cold start: lean on the population until the subject's own history carries weight.
            weight = st.n / p.warmup
            prior_level = self._to_model(self.prior.value, unit)
            prior_scale = self._to_model(self.prior.value + self.prior.scale, unit) - prior_level
            expected = weight * expected + (1 - weight) * prior_level
            scale = weight * scale + (1 - weight) * prior_scale
            if not p.two_sided:
                # Upward-only scoring never flags a new subject for being busier than it has yet shown.
                expected = max(expected, prior_level)
        return expected, profile, max(scale * _MAD_TO_SIGMA, p.min_scale)

    def ready(self) -> bool:
        """Whether scores mean anything yet: a prior, or enough history of its own."""
        return self.prior is not None or self.state.n >= self.params.warmup

    def assess(self, ts_ms: int, value: float) -> Assessment:
        """Score ``value`` at ``ts_ms`` against what the model expects; changes nothing."""
        unit = self._unit()
        if unit is None or not self.ready():
            return Assessment(score=0.0, z=0.0, cusum_z=0.0, expected=value)
        p, st = self.params, self.state
        expected, _, sigma = self._predict(ts_ms, unit)
        z = (self._to_model(value, unit) - expected) / sigma
        step = self._cusum_step(z)
        up = max(0.0, st.cusum_up + step - p.cusum_drift)
        down = max(0.0, st.cusum_down - step - p.cusum_drift)
        deviation = max(z, up / p.cusum_limit * p.alarm_z)
        cusum = up
        if p.two_sided:
            deviation = max(deviation, -z, down / p.cusum_limit * p.alarm_z)
            cusum = max(up, down)
        score = 1.0 / (1.0 + math.exp(-p.score_slope * (deviation - p.alarm_z)))
        return Assessment(
            score=score, z=z, cusum_z=cusum / p.cusum_limit * p.alarm_z, expected=self._from_model(expected, unit)
        )

    def _cusum_step(self, z: float) -> float:
        """z deflated by the residuals' autocorrelation ρ: a sum of n AR(1) terms has about
        (1 + ρ) / (1 − ρ) times the variance of n independent ones, so a slowly wandering series does
        not look like a sustained shift, while independent noise (request counts) keeps full power."""
        st = self.state
        rho = min(max(st.lag_product / st.z_power, 0.0), 0.95) if st.z_power > 0 else 0.0
        return z * math.sqrt((1 - rho) / (1 + rho))

    def score_one(self, ts_ms: int, value: float) -> float:
        return self.assess(ts_ms, value).score

    def learn_one(self, ts_ms: int, value: float) -> None:
        st, p = self.state, self.params
        if self._unit() is None:
            # Learn the unit once from the warm-up values, then replay them into the model.
            st.pending.append([ts_ms, value])
            if len(st.pending) < p.warmup:
                return
            typical = median(abs(v) for _, v in st.pending)
            st.unit = typical * p.unit_fraction if typical > 0 else 1.0
            pending, st.pending = st.pending, []
            for earlier_ts, earlier in pending:
                self._learn(int(earlier_ts), earlier)
            return
        self._learn(ts_ms, value)

    def _learn(self, ts_ms: int, value: float) -> None:
        st, p = self.state, self.params
        unit = self._unit()
        assert unit is not None  # set before any learning
        y = self._to_model(value, unit)
        # Seasonal slots learn per unit of time, not per point, so minute and hourly series age alike.
        spacing_h = 1.0 if st.last_ts_ms is None else min(1.0, max(0, ts_ms - st.last_ts_ms) / MS_PER_HOUR)
        st.last_ts_ms = ts_ms
        if st.n == 0:
            st.level = y
            st.n = 1
            return
        # z, the CUSUM and the scale judge the prediction as scored; the level and profile learn from
        # the residual of the unshrunk profile.
        expected, profile, sigma = self._predict(ts_ms, unit, use_prior=False)
        residual = y - expected
        z = residual / sigma
        warm = st.n >= p.warmup
        step = self._cusum_step(z)
        st.cusum_up = min(max(0.0, st.cusum_up + step - p.cusum_drift), 2 * p.cusum_limit) if warm else 0.0
        st.cusum_down = min(max(0.0, st.cusum_down - step - p.cusum_drift), 2 * p.cusum_limit) if warm else 0.0
        # Huber: an outlier teaches the model only as much as a 'huber_z' deviation would.
        bound = p.huber_z * sigma
        profile_residual = y - profile
        clipped = max(-bound, min(bound, profile_residual)) if warm else profile_residual
        level_rate = max(p.level_alpha, 1.0 / (st.n + 1))
        st.level += level_rate * clipped
        # The scale hears at most twice itself per value (a normal residual exceeds that ~1 % of the
        # time), so a surge or a ramp cannot quickly widen the band it is judged by.
        scale_input = min(abs(residual), SCALE_STEP_CAP * max(st.scale, p.min_scale)) if warm else abs(residual)
        st.scale += max(p.scale_alpha, 1.0 / st.n) * (scale_input - st.scale)
        bounded_z = max(-p.huber_z, min(p.huber_z, z))
        if warm:
            # Autocorrelation is a trait of the series, learned slowly (so an episode's own run barely
            # moves it) and only once warm (the warm-up's residuals are the model converging).
            rho_rate = p.scale_alpha * AUTOCORRELATION_RATE
            st.lag_product += rho_rate * (bounded_z * st.last_z - st.lag_product)
            st.z_power += rho_rate * (bounded_z * bounded_z - st.z_power)
        st.last_z = bounded_z
        remainder = clipped * (1 - level_rate)
        hour, weekday = _slots(ts_ms)
        # A weighted running mean at first, an EWMA over periods once the slot has history.
        st.day_weight[hour] += spacing_h
        day_step = max(p.season_alpha, 1.0 / st.day_weight[hour]) * spacing_h * remainder
        spacing_w = spacing_h / HOURS_PER_DAY
        st.week_weight[weekday] += spacing_w
        week_step = max(p.season_alpha, 1.0 / st.week_weight[weekday]) * spacing_w * remainder
        # Offsets average zero and the mean lives in the level: otherwise level and profiles, learning
        # from the same residual, drift in opposite directions and the profile is no longer a profile.
        st.day[hour] += day_step
        st.day_shift += day_step / HOURS_PER_DAY
        st.week[weekday] += week_step
        st.week_shift += week_step / DAYS_PER_WEEK
        st.level += day_step / HOURS_PER_DAY + week_step / DAYS_PER_WEEK
        st.n = min(st.n + 1, _COUNT_CAP)
