"""The compiled learner (``detectors.native.LaneLearner``, behind ``lane_learner``) against a plain-Python
reference of the model's learning step: the same states, bit for bit, on any series."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import native, seasonal
from detectors.seasonal import _LANES, LANE_SIZE, SeasonalParams, SeasonalState, lane_learner

L = seasonal  # the layout's names, as the model reads them
COUNT_CAP = 1_000_000
SCALE_STEP_CAP = 2.0
AUTOCORRELATION_RATE = 0.25


def reference_learn(params: SeasonalParams, units: tuple[float, ...], state: SeasonalState,
                    points: list[tuple[int, tuple[float, ...]]]) -> None:
    """The learning step as the module docstring states it, one point and one lane at a time, every lane held
    from the start (a lane of zeros learning a zero stays zeros, which the compiled learner relies on to skip it)."""
    p = params
    lanes = len(units)
    v = array("f", bytes(4 * (_LANES + lanes * LANE_SIZE)))
    old = state.values.tolist() or [0.0] * _LANES
    v[:_LANES] = array("f", old[:_LANES])
    for lane in range(lanes):
        if state.stirred >> lane & 1:
            at = state.lane_offset(lane)
            v[_LANES + lane * LANE_SIZE : _LANES + (lane + 1) * LANE_SIZE] = array("f", old[at : at + LANE_SIZE])
    n, last = state.n, state.last_ts_ms
    stirred = state.stirred
    for ts, values in points:
        spacing = 1.0 if last is None else min(max(ts - last, 0) / L.MS_PER_HOUR, 1.0)
        last = ts
        stirred |= sum(1 << lane for lane, value in enumerate(values) if value)
        if n == 0:
            for lane, value in enumerate(values):
                v[_LANES + lane * LANE_SIZE + L._LEVEL] = math.asinh(value / units[lane]) if value else 0.0
            n = 1
            continue
        hours = ts // L.MS_PER_HOUR
        hour, weekday = hours % 24, (hours // 24 + L._EPOCH_WEEKDAY) % 7
        day_seen, week_seen = v[L._DAY_WEIGHT + hour], v[L._WEEK_WEIGHT + weekday]
        day_shrink = day_seen / (day_seen + p.season_shrinkage)
        week_shrink = week_seen / (week_seen + p.season_shrinkage)
        level_rate = max(1.0 / (n + 1), p.level_alpha)
        scale_rate = max(1.0 / n, p.scale_alpha)
        day_seen += spacing
        v[L._DAY_WEIGHT + hour] = day_seen
        week_seen += spacing / 24
        v[L._WEEK_WEIGHT + weekday] = week_seen
        # A point at the last one's time moves no profile (its slot may have seen no time: no 1 / 0).
        day_factor = max(1.0 / day_seen, p.season_alpha) * spacing if spacing else 0.0
        week_factor = max(1.0 / week_seen, p.season_alpha) * (spacing / 24) if spacing else 0.0
        for lane, value in enumerate(values):
            b = _LANES + lane * LANE_SIZE
            y = math.asinh(value / units[lane])
            level, scale = v[b + L._LEVEL], v[b + L._SCALE]
            day_value, week_value = v[b + L._DAY + hour], v[b + L._WEEK + weekday]
            day_shift, week_shift = v[b + L._DAY_SHIFT], v[b + L._WEEK_SHIFT]
            day_offset, week_offset = day_value - day_shift, week_value - week_shift
            profile = level + day_offset + week_offset
            expected = level + day_shrink * day_offset + week_shrink * week_offset
            sigma = max(scale * L._MAD_TO_SIGMA, p.min_scale)
            residual = y - expected
            z = residual / sigma
            bounded_z = max(min(z, p.huber_z), -p.huber_z)
            if n >= p.warmup:
                lag_product, z_power = v[b + L._LAG_PRODUCT], v[b + L._Z_POWER]
                rho = 0.0
                if z_power > 0 and lag_product / z_power > 0:
                    rho = min(lag_product / z_power, 0.95)
                step = z * math.sqrt((1 - rho) / (1 + rho))
                cap = 2 * p.cusum_limit
                v[b + L._CUSUM_UP] = min(max(v[b + L._CUSUM_UP] + step - p.cusum_drift, 0.0), cap)
                v[b + L._CUSUM_DOWN] = min(max(v[b + L._CUSUM_DOWN] - step - p.cusum_drift, 0.0), cap)
                bound = p.huber_z * sigma
                clipped = max(min(y - profile, bound), -bound)
                scale_input = min(abs(residual), SCALE_STEP_CAP * max(scale, p.min_scale))
                rate = p.scale_alpha * AUTOCORRELATION_RATE
                v[b + L._LAG_PRODUCT] = lag_product + rate * (bounded_z * v[b + L._LAST_Z] - lag_product)
                v[b + L._Z_POWER] = z_power + rate * (bounded_z * bounded_z - z_power)
            else:
                v[b + L._CUSUM_UP] = v[b + L._CUSUM_DOWN] = 0.0
                clipped, scale_input = y - profile, abs(residual)
            level += level_rate * clipped
            v[b + L._SCALE] = scale + scale_rate * (scale_input - scale)
            v[b + L._LAST_Z] = bounded_z
            remainder = clipped * (1 - level_rate)
            day_step, week_step = day_factor * remainder, week_factor * remainder
            v[b + L._DAY + hour] = day_value + day_step
            v[b + L._DAY_SHIFT] = day_shift + day_step / 24
            v[b + L._WEEK + weekday] = week_value + week_step
            v[b + L._WEEK_SHIFT] = week_shift + week_step / 7
            v[b + L._LEVEL] = level + (day_step / 24 + week_step / 7)
        n = min(n + 1, COUNT_CAP)
    state.n, state.last_ts_ms, state.stirred = n, last, stirred
    kept = v[:_LANES]
    for lane in range(lanes):
        if stirred >> lane & 1:
            kept += v[_LANES + lane * LANE_SIZE : _LANES + (lane + 1) * LANE_SIZE]
    state.values = kept if n else state.values


def _bits(state: SeasonalState) -> tuple[int, int | None, int, bytes]:
    return state.n, state.last_ts_ms, state.stirred, state.values.tobytes()


values_strategy = st.one_of(
    st.just(0.0),
    st.integers(0, 5_000).map(float),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0, 1e30, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(
    lanes=st.integers(1, 3),
    warmup=st.integers(1, 30),
    steps=st.lists(st.tuples(st.integers(-90 * 60_000, 3 * 3_600_000), st.lists(values_strategy, min_size=3,
                                                                                 max_size=3)),
                   min_size=1, max_size=120),
    chunk=st.integers(1, 25),
)
def test_compiled_learner_learns_what_the_reference_step_learns(
    lanes: int, warmup: int, steps: list[tuple[int, list[float]]], chunk: int
) -> None:
    params = SeasonalParams(warmup=warmup, two_sided=False)
    units = (10.0, 25.0, 3.0)[:lanes]
    ts, points = 1_767_571_200_000, []
    for delta, values in steps:  # mostly forward in time, sometimes back (late points), across days and weeks
        ts += delta
        points.append((ts, tuple(values[:lanes])))
    compiled, reference = SeasonalState(lanes=lanes), SeasonalState(lanes=lanes)
    learn = lane_learner(params, units)
    for start in range(0, len(points), chunk):
        learn(compiled, points[start : start + chunk])
        reference_learn(params, units, reference, points[start : start + chunk])
        assert _bits(compiled) == _bits(reference)


def test_a_stirred_lane_grows_the_states_own_array_and_the_shared_empty_one_is_never_written() -> None:
    learn = lane_learner(SeasonalParams(), (1.0, 1.0))
    state, untouched = SeasonalState(lanes=2), SeasonalState(lanes=2)
    learn(state, [(0, (1.0, 0.0))])
    own = state.values
    assert len(own) == _LANES + LANE_SIZE and state.stirred == 0b01
    learn(state, [(60_000, (1.0, 2.0))])
    assert state.values is own and len(own) == _LANES + 2 * LANE_SIZE and state.stirred == 0b11
    assert len(untouched.values) == 0 and untouched.values is SeasonalState(lanes=2).values


def test_wrong_shapes_are_refused_with_the_reason() -> None:
    learn = lane_learner(SeasonalParams(), (1.0, 1.0))
    with pytest.raises(ValueError, match="a learner of 2 lanes for a 3-lane state"):
        learn(SeasonalState(lanes=3), [(0, (1.0, 1.0, 1.0))])
    with pytest.raises(ValueError, match="a point of 1 values for 2 lanes"):
        learn(SeasonalState(lanes=2), [(0, (1.0,))])
    with pytest.raises(ValueError, match="a point of more than 2 values"):
        learn(SeasonalState(lanes=2), [(0, (1.0, 1.0, 1.0))])


def test_the_compiled_layout_is_the_models_layout() -> None:
    layout = native.seasonal_layout()
    shared = {name: value for name, value in layout.items() if hasattr(seasonal, name)}
    assert {name: getattr(seasonal, name) for name in shared} == shared
    assert {"_LANES", "LANE_SIZE", "_LEVEL", "_WEEK", "_DAY_WEIGHT", "MS_PER_HOUR", "_MAD_TO_SIGMA"} <= set(shared)
    assert (layout["_COUNT_CAP"], layout["SCALE_STEP_CAP"], layout["AUTOCORRELATION_RATE"]) == (
        COUNT_CAP, SCALE_STEP_CAP, AUTOCORRELATION_RATE)
