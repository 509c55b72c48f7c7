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
  value moves it by at most twice itself, so a surge or a ramp cannot quickly widen
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

import base64
import math
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from detectors import native
from detectors.state import base64_text

HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
MS_PER_HOUR = 3_600_000
# 1970-01-01 was a Thursday: shift so that slot 0 is Monday.
_EPOCH_WEEKDAY = 3
_MAD_TO_SIGMA = 1.25
_THRESHOLD_MARGIN = 1e-9
"""Relative safety margin of ``SeasonalModel.threshold`` (its float error is some 1e-15)."""


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


# Layout of ``SeasonalState.values``: the slot weights the lanes share, then per lane its scalars and profiles.
_DAY_WEIGHT = 0
_WEEK_WEIGHT = _DAY_WEIGHT + HOURS_PER_DAY
_LANES = _WEEK_WEIGHT + DAYS_PER_WEEK
_LEVEL, _SCALE, _CUSUM_UP, _CUSUM_DOWN, _LAST_Z, _LAG_PRODUCT, _Z_POWER, _DAY_SHIFT, _WEEK_SHIFT = range(9)
_DAY = 9
_WEEK = _DAY + HOURS_PER_DAY
LANE_SIZE = _WEEK + DAYS_PER_WEEK


_UNLEARNED: array[float] = array("f")
"""The values of every state that has learned nothing yet: one shared empty array, never written (the learner
gives a state its own array at its first point), so a subject seen once costs no model."""
_READ_ZEROS = array("f", bytes(4 * (_LANES + LANE_SIZE)))
"""What an unlearned state's slot weights and a lane that only ever learned zeros read: zeros, at ``_LANES``."""


def _unlearned() -> array[float]:
    return _UNLEARNED


def _lane_offset(stirred: int, lane: int) -> int:
    """Where a lane's numbers start among the ``stirred`` lanes: after the slot weights and the stirred lanes
    before it (for an unstirred lane, where its numbers go when it is stirred)."""
    return _LANES + LANE_SIZE * (stirred & ((1 << lane) - 1)).bit_count()


def _encode_floats(values: array[float]) -> str:
    """The 32-bit floats exactly, little-endian, in base64: 1.3 characters a number (JSON decimals of the
    doubles they read as take ~10) and one C call instead of a Python float per number."""
    if sys.byteorder == "big":
        values = array("f", values)
        values.byteswap()
    return base64_text(values)


def _decode_floats(text: str) -> array[float]:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes are not a whole number of 32-bit floats")
    values = array("f", raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values


@dataclass(slots=True)
class SeasonalState:
    """Everything the model remembers about ``lanes`` series learned at the same times (a subject's requests,
    credits and errors), as JSON-able numbers: snapshot → restore is exact.

    What depends only on the times learned is shared: the count ``n``, the last time, and how much data each
    hour-of-day and day-of-week slot has seen. Each lane has its level, scale, CUSUMs, autocorrelation and
    profiles. All of it lies in one array of 32-bit floats (4 bytes a number, not a 24-byte float object and
    a pointer): the shared slot weights first, then the ``LANE_SIZE`` numbers of each *stirred* lane, in lane
    order, laid out as the ``_LEVEL`` … ``_WEEK`` offsets say. A lane that has only ever learned zeros is all
    zeros, and learning a zero leaves it all zeros exactly, so it is neither stored nor learned until its first
    other value (most subjects' error lane, and the credits lane of a key that only reads); a state that has
    learned nothing holds no array of its own. The arithmetic is in doubles; only what is kept is rounded to
    single precision (7 significant digits, far finer than any count or z-score the model is judged by: going
    from doubles left every finding, action and cloud-monitoring score as it was but one ratio's third decimal
    in the fixed replays; ``assess`` and ``threshold`` read the same stored numbers, so they agree). A profile
    offset is ``profile[h] − shift`` (its mean lives in the level), so re-centring a profile is O(1)."""

    lanes: int = 1
    n: int = 0
    last_ts_ms: int | None = None
    unit: float | None = None
    """The learned asinh unit (single-lane models with ``SeasonalParams.unit`` None only)."""
    pending: tuple[tuple[int, float], ...] = ()
    """Warm-up (ts_ms, value) pairs held until a learned unit is known (a tuple: most states never hold any,
    and an empty tuple is shared where an empty list would cost 56 bytes each)."""
    values: array[float] = field(default_factory=_unlearned)
    """Empty until the first point is learned; then the slot weights and the stirred lanes."""
    stirred: int = 0
    """A bit per lane that has learned a value other than zero: the lanes ``values`` holds."""

    def lane_offset(self, lane: int) -> int:
        """Where a stirred lane's numbers start in ``values``."""
        return _lane_offset(self.stirred, lane)

    def dump(self) -> dict[str, Any]:
        return {
            "lanes": self.lanes,
            "n": self.n,
            "last_ts_ms": self.last_ts_ms,
            "unit": self.unit,
            "pending": [list(pair) for pair in self.pending],
            "stirred": self.stirred,
            "values": _encode_floats(self.values),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> SeasonalState:
        lanes, stirred = data["lanes"], data["stirred"]
        values = _decode_floats(data["values"]) or _UNLEARNED
        if not 0 <= stirred < 1 << lanes:
            raise ValueError(f"a seasonal state of {lanes} lanes cannot have stirred lanes {stirred:b}")
        if (len(values) if values else _LANES) != _LANES + LANE_SIZE * stirred.bit_count():
            raise ValueError(f"a seasonal state with stirred lanes {stirred:b} cannot hold {len(values)} values")
        if data["n"] and not values:
            raise ValueError(f"a seasonal state that has learned {data['n']} points holds no values")
        pending = tuple((int(ts_ms), value) for ts_ms, value in data["pending"])
        return cls(lanes, data["n"], data["last_ts_ms"], data["unit"], pending, values, stirred)


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


@dataclass(frozen=True, slots=True)
class Threshold:
    """What ``threshold`` concludes about one time: where the alarm starts, and what is expected."""

    value: float
    """No value below this scores the target (it is a hair below the exact bound, never above it)."""
    expected: float
    """Expected value in the series' own units, as ``assess`` reports it."""


def _slots(ts_ms: int) -> tuple[int, int]:
    hours = ts_ms // MS_PER_HOUR
    return int(hours % HOURS_PER_DAY), int((hours // HOURS_PER_DAY + _EPOCH_WEEKDAY) % DAYS_PER_WEEK)


def _shrink(weight: float, strength: float) -> float:
    return weight / (weight + strength)


def _deflation(lag_product: float, z_power: float) -> float:
    """What a z counts for in the CUSUM, given the residuals' autocorrelation ρ: a sum of n AR(1) terms has
    about (1 + ρ) / (1 − ρ) times the variance of n independent ones, so a slowly wandering series does not
    look like a sustained shift, while independent noise (request counts) keeps full power."""
    rho = min(max(lag_product / z_power, 0.0), 0.95) if z_power > 0 else 0.0
    return math.sqrt((1 - rho) / (1 + rho))


class SeasonalModel:
    """The online model of one lane of a ``SeasonalState``; the state is the caller's (e.g. in a SubjectStore)."""

    __slots__ = ("_bit", "_learner", "lane", "params", "prior", "state")

    def __init__(
        self, params: SeasonalParams, state: SeasonalState | None = None, prior: Prior | None = None, lane: int = 0
    ) -> None:
        self.params = params
        self.state = state if state is not None else SeasonalState(unit=params.unit)
        self.prior = prior
        if not 0 <= lane < self.state.lanes:
            raise ValueError(f"lane {lane} of a {self.state.lanes}-lane state")
        self.lane, self._bit = lane, 1 << lane
        self._learner: native.LaneLearner | None = None  # for a single series, made once its unit is known

    # --- transform -------------------------------------------------------------------------
    def _unit(self) -> float | None:
        return self.state.unit if self.params.unit is None else self.params.unit

    def _to_model(self, value: float, unit: float) -> float:
        return math.asinh(value / unit)

    def _from_model(self, y: float, unit: float) -> float:
        return math.sinh(y) * unit

    # --- the model -------------------------------------------------------------------------
    def _arrays(self) -> tuple[array[float], array[float], int]:
        """(the array of the slot weights, the array of this lane's numbers, where they start in it)."""
        st = self.state
        values = st.values or _READ_ZEROS
        if st.stirred & self._bit:
            return values, values, st.lane_offset(self.lane)
        return values, _READ_ZEROS, _LANES

    def _predict(self, ts_ms: int, unit: float) -> tuple[float, float]:
        """(expected, robust σ) in model units, the prior blended in while the history is short. Predictions
        shrink young seasonal offsets towards zero (``lane_learner`` does the same arithmetic, inlined)."""
        st, p = self.state, self.params
        weights, v, base = self._arrays()
        hour, weekday = _slots(ts_ms)
        day_offset = v[base + _DAY + hour] - v[base + _DAY_SHIFT]
        week_offset = v[base + _WEEK + weekday] - v[base + _WEEK_SHIFT]
        expected = (
            v[base + _LEVEL]
            + _shrink(weights[_DAY_WEIGHT + hour], p.season_shrinkage) * day_offset
            + _shrink(weights[_WEEK_WEIGHT + weekday], p.season_shrinkage) * week_offset
        )
        scale = v[base + _SCALE]
        if self.prior is not None and st.n < p.warmup:
            # Cold start: lean on the population until the subject's own history carries weight.
            weight = st.n / p.warmup
            prior_level = self._to_model(self.prior.value, unit)
            prior_scale = self._to_model(self.prior.value + self.prior.scale, unit) - prior_level
            expected = weight * expected + (1 - weight) * prior_level
            scale = weight * scale + (1 - weight) * prior_scale
            if not p.two_sided:
                # Upward-only scoring never flags a new subject for being busier than it has yet shown.
                expected = max(expected, prior_level)
        return expected, max(scale * _MAD_TO_SIGMA, p.min_scale)

    def ready(self) -> bool:
        """Whether scores mean anything yet: a prior, or enough history of its own."""
        return self.prior is not None or self.state.n >= self.params.warmup

    def assess(self, ts_ms: int, value: float) -> Assessment:
        """Score ``value`` at ``ts_ms`` against what the model expects; changes nothing."""
        unit = self._unit()
        if unit is None or not self.ready():
            return Assessment(score=0.0, z=0.0, cusum_z=0.0, expected=value)
        p, (_, v, base) = self.params, self._arrays()
        expected, sigma = self._predict(ts_ms, unit)
        z = (self._to_model(value, unit) - expected) / sigma
        step = z * _deflation(v[base + _LAG_PRODUCT], v[base + _Z_POWER])
        up = max(0.0, v[base + _CUSUM_UP] + step - p.cusum_drift)
        down = max(0.0, v[base + _CUSUM_DOWN] - step - p.cusum_drift)
        deviation = max(z, up / p.cusum_limit * p.alarm_z)
        cusum = up
        if p.two_sided:
            deviation = max(deviation, -z, down / p.cusum_limit * p.alarm_z)
            cusum = max(up, down)
        score = 1.0 / (1.0 + math.exp(-p.score_slope * (deviation - p.alarm_z)))
        return Assessment(
            score=score, z=z, cusum_z=cusum / p.cusum_limit * p.alarm_z, expected=self._from_model(expected, unit)
        )

    def threshold(self, ts_ms: int, score: float) -> Threshold:
        """Where an upward-only model starts to score ``score`` (0 < score < 1) at ``ts_ms``: the inverse of
        ``assess`` through its logistic, CUSUM step and asinh. A caller re-scoring a value that only grows
        (a filling bucket) need not call ``assess`` below ``Threshold.value``."""
        p, (_, v, base) = self.params, self._arrays()
        if p.two_sided:
            raise ValueError("a two-sided model also scores values below its expectation")
        unit = self._unit()
        if unit is None or not self.ready():
            return Threshold(value=math.inf, expected=math.nan)
        expected, sigma = self._predict(ts_ms, unit)
        # score >= target  <=>  max(z, up / cusum_limit * alarm_z) >= deviation, up = max(0, cusum_up + step - drift)
        deviation = p.alarm_z + math.log(score / (1 - score)) / p.score_slope
        if deviation <= 0:
            return Threshold(value=-math.inf, expected=self._from_model(expected, unit))
        cusum_z = (deviation * p.cusum_limit / p.alarm_z + p.cusum_drift - v[base + _CUSUM_UP]) / _deflation(
            v[base + _LAG_PRODUCT], v[base + _Z_POWER]
        )
        expected_value = self._from_model(expected, unit)
        try:
            value = self._from_model(expected + min(deviation, cusum_z) * sigma, unit)
        except OverflowError:
            return Threshold(value=math.inf, expected=expected_value)
        # Float rounding on the way must never put the bound above a value that does score.
        return Threshold(value=value - _THRESHOLD_MARGIN * (abs(value) + 1), expected=expected_value)

    def score_one(self, ts_ms: int, value: float) -> float:
        return self.assess(ts_ms, value).score

    def learn_one(self, ts_ms: int, value: float) -> None:
        st, p = self.state, self.params
        if self._unit() is None:
            # Learn the unit once from the warm-up values, then replay them into the model.
            st.pending = (*st.pending, (ts_ms, value))
            if len(st.pending) < p.warmup:
                return
            typical = median(abs(v) for _, v in st.pending)
            st.unit = typical * p.unit_fraction if typical > 0 else 1.0
            pending, st.pending = st.pending, ()
            self.learn_many(pending)
            return
        self.learn_many(((ts_ms, value),))

    def learn_many(self, points: Iterable[tuple[int, float]]) -> None:
        """``learn_one`` each (ts_ms, value) in turn, to the same state, in one pass."""
        if self.state.lanes != 1:
            raise ValueError("the lanes of a shared state learn together (lane_learner), not one by one")
        if self._learner is None:
            unit = self._unit()
            if unit is None:
                for ts_ms, value in points:
                    self.learn_one(ts_ms, value)
                return
            self._learner = lane_learner(self.params, (unit,))
        self._learner(self.state, ((ts_ms, (value,)) for ts_ms, value in points))


def lane_learner(params: SeasonalParams, units: tuple[float, ...]) -> native.LaneLearner:
    """A learner for states of ``len(units)`` lanes that share ``params`` but their ``units``; the time-only
    work (slots, spacing, slot weights, rates) is done once per point for all lanes.

    This is the traffic detector's hot loop, called on every closed bucket, so it is compiled
    (``native/src/seasonal.rs``): the arithmetic of ``_predict`` and of the steps the module docstring
    describes, operation for operation in doubles, with what is kept rounded to 32-bit floats as ``array("f")``
    rounds it. A lane stirred by a point is inserted into ``values`` (the same array object); a state's first
    point gives it an array of its own."""
    return native.LaneLearner(
        warmup=params.warmup,
        season_shrinkage=params.season_shrinkage,
        min_scale=params.min_scale,
        huber_z=params.huber_z,
        cusum_drift=params.cusum_drift,
        cusum_limit=params.cusum_limit,
        level_alpha=params.level_alpha,
        season_alpha=params.season_alpha,
        scale_alpha=params.scale_alpha,
        units=list(units),
    )
