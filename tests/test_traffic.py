"""The abnormal-traffic detector and its online model on small hand-made sequences, and score-series."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import math
import random
from pathlib import Path

import pytest

from benchmarks.nab_score import anomaly_windows, score_series
from detectors.native import TrafficSubject, TrafficWindow
from detectors.seasonal import _LANES, LANE_SIZE, Prior, SeasonalModel, SeasonalParams, SeasonalState, lane_learner
from detectors.state import SubjectStore
from detectors.traffic import Signal, TrafficAnomalyDetector, model_params, series_params
from models.config import StateConfig, TrafficAnomalyConfig
from models.finding import Finding, SubjectType
from streams.cli import main
from streams.series import read_series, score_points
from tests.conftest import EventFactory

STATE = StateConfig()
HOUR_MS = 3_600_000


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: seeded, so every run sees the same 'noisy' traffic."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def feed(
    detector: TrafficAnomalyDetector,
    make_event: EventFactory,
    rates: list[float],
    *,
    start_min: int = 0,
    seed: int = 1,
    bucket_s: int = 60,
    **fields: object,
) -> list[tuple[int, Finding]]:
    """Poisson calls at ``rates[i]`` per bucket for bucket i; returns (bucket index, finding) pairs."""
    rng = random.Random(seed)
    found = []
    for index, rate in enumerate(rates):
        calls = poisson(rng, rate)
        for call in range(calls):
            offset = (start_min * 60 + index * bucket_s) + bucket_s * (call + 0.5) / calls
            found += [(index, f) for f in detector.observe(make_event(offset, **fields))]
    return found


def test_a_surge_after_a_steady_hour_is_flagged_at_once_with_evidence(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    assert feed(detector, make_event, [5.0] * 60) == []
    findings = [f for call in range(120) for f in detector.observe(make_event(3600 + call * 0.5))]
    assert len(findings) == 1
    finding = findings[0]
    assert finding.clauses == ["7.1", "11.1(5)"]
    assert finding.subject_type is SubjectType.ACCOUNT and finding.subject_id == "acct-1"
    evidence = finding.evidence
    assert evidence["signal"] == "volume" and evidence["ratio"] >= 3 and evidence["z"] > 3
    assert evidence["observed"] > evidence["expected"] * 3 and 3 < evidence["expected"] < 8
    assert evidence["requests"] < 60, "flagged while the bucket was still filling"


@pytest.mark.parametrize("cusum", [True, False])
def test_a_sustained_step_change_is_caught_by_the_cusum(make_event: EventFactory, cusum: bool) -> None:
    # +50 % is too small for any single bucket to stand out. The defaults leave steps under surge_ratio
    # alone; an operator who wants them lowers the ratio gate and makes the CUSUM more sensitive.
    config = TrafficAnomalyConfig(surge_ratio=1.3, cusum_drift=0.5, cusum_limit=8.0 if cusum else 1e9)
    detector = TrafficAnomalyDetector(config, STATE)
    assert feed(detector, make_event, [20.0] * 120) == []
    found = feed(detector, make_event, [30.0] * 60, start_min=120, seed=2)
    if not cusum:
        assert found == [], "without the CUSUM no single bucket of the step is enough"
        return
    assert found, "a lasting +50 % went unnoticed"
    minute, finding = found[0]
    assert 2 <= minute < 30
    assert finding.evidence["cusum_z"] >= finding.evidence["z"]


def test_an_error_storm_at_normal_volume_is_flagged_as_errors(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    assert feed(detector, make_event, [30.0] * 60) == []
    findings = []
    for call in range(30):  # same volume, but two thirds of the calls are rejected keys
        status = 401 if call % 3 else 200
        findings += detector.observe(make_event(3600 + call * 2, status=status, credits=0))
    assert len(findings) == 1
    assert findings[0].evidence["signal"] == "errors"
    assert findings[0].evidence["errors"] >= TrafficAnomalyConfig().min_error_events


def test_a_surge_that_ramps_up_is_caught_before_it_peaks(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    assert feed(detector, make_event, [6.0] * 90) == []
    ramp = [6.0 + 3.0 * minute for minute in range(1, 31)]  # +3 calls/min every minute up to 96/min
    found = feed(detector, make_event, ramp, start_min=90, seed=3)
    assert found, "the ramp was absorbed as the new normal"
    assert found[0][0] < 20, f"caught only at minute {found[0][0]} of the ramp"


def test_a_clean_daily_cycle_over_several_days_gives_no_findings(make_event: EventFactory) -> None:
    # Ten-minute buckets keep the event count small; the floors are lowered so that only the model decides.
    config = TrafficAnomalyConfig(bucket_s=600, min_bucket_events=5, surge_ratio=1.5, min_bucket_credits=0)
    detector = TrafficAnomalyDetector(config, STATE)
    buckets_per_day = 144
    rates = [30.0 * (1 + 0.8 * math.sin(2 * math.pi * b / buckets_per_day)) for b in range(4 * buckets_per_day)]
    assert feed(detector, make_event, rates, bucket_s=600, credits=1) == []
    account = detector.accounts.touch("acct-1", 4 * 86_400_000)
    model = SeasonalModel(detector.params[Signal.VOLUME], account.model, lane=0)
    peak, trough = model.assess(6 * HOUR_MS, 0).expected, model.assess(18 * HOUR_MS, 0).expected
    assert peak > 3 * trough, "the daily profile was not learned"


def test_seasonality_is_learned_so_a_daily_business_hours_jump_stops_scoring() -> None:
    model = SeasonalModel(SeasonalParams(unit=10.0, two_sided=False))
    rng = random.Random(5)
    opening_scores = []
    for hour in range(21 * 24):
        value = poisson(rng, 400.0 if 9 <= hour % 24 < 17 else 40.0)
        if hour % 24 == 9:
            opening_scores.append(model.score_one(hour * HOUR_MS, value))
        model.learn_one(hour * HOUR_MS, value)
    assert max(opening_scores[-7:]) < 0.05, "after three weeks the 09:00 jump is the daily pattern"
    day = 21 * 24 * HOUR_MS
    assert 300 < model.assess(day + 12 * HOUR_MS, 0).expected < 500, "midday expects office-hours traffic"
    assert 25 < model.assess(day + 3 * HOUR_MS, 0).expected < 60, "the night expects night traffic"
    assert model.score_one(day + 3 * HOUR_MS, 400) > 0.9, "office-hours traffic at 03:00 is an anomaly"


def test_a_new_busy_account_is_not_flagged_for_being_new(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    findings = []
    for call in range(100):  # 100 calls in its first minute, on a new key too: busy, not abnormal
        findings += detector.observe(make_event(call * 0.6, account_id="brand-new", api_key_id="new-key"))
    assert findings == []
    state = detector.accounts.touch("brand-new", 60_000)
    assert state.requests == 100


def test_a_key_surging_inside_a_big_account_is_flagged_on_the_key(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    assert feed(detector, make_event, [400.0] * 60, api_key_id="key-big") == []
    assert feed(detector, make_event, [5.0] * 60, api_key_id="key-small", seed=4) == []
    findings = [
        f for call in range(80) for f in detector.observe(make_event(3600 + call * 0.5, api_key_id="key-small"))
    ]
    assert len(findings) == 1
    assert findings[0].subject_type is SubjectType.API_KEY and findings[0].subject_id == "key-small"


def test_model_snapshot_through_json_restores_identical_scores() -> None:
    params = SeasonalParams(unit=None, two_sided=True)
    rng = random.Random(9)
    values = [(hour * HOUR_MS, 100 + 30 * math.sin(hour / 3.8) + rng.gauss(0, 5)) for hour in range(300)]
    straight = SeasonalModel(params)
    for ts, value in values[:150]:
        straight.learn_one(ts, value)
    restored = SeasonalModel(params, SeasonalState.load(json.loads(json.dumps(straight.state.dump()))))
    for ts, value in values[150:]:
        assert restored.score_one(ts, value) == straight.score_one(ts, value)
        straight.learn_one(ts, value)
        restored.learn_one(ts, value)
    assert restored.state.dump() == straight.state.dump()


def test_learning_many_points_at_once_equals_learning_them_one_by_one() -> None:
    rng = random.Random(4)
    points = [(minute * 60_000, float(poisson(rng, 6.0) if minute % 7 else 0)) for minute in range(400)]
    for params in (SeasonalParams(unit=10.0, two_sided=False), SeasonalParams(unit=None)):
        one_by_one, at_once = SeasonalModel(params), SeasonalModel(params)
        for ts, value in points:
            one_by_one.learn_one(ts, value)
        at_once.learn_many(points[:3])
        at_once.learn_many(points[3:])
        assert at_once.state.dump() == one_by_one.state.dump()


@pytest.mark.parametrize("seed", range(6))
def test_the_threshold_is_where_the_score_starts(seed: int) -> None:
    # Cold and warm models, with and without a CUSUM already building: no count under the threshold reaches the
    # score, and the first count over it does (the detector skips scoring below it).
    rng = random.Random(seed)
    params = model_params(TrafficAnomalyConfig(), two_sided=False, unit=10.0)
    model = SeasonalModel(params, prior=Prior(20.0, 20.0))
    rate = rng.uniform(1.0, 60.0)
    for minute in range(rng.choice([0, 5, 30, 300])):
        model.learn_one(minute * 60_000, poisson(rng, rate * (2.0 if minute > 250 else 1.0)))
    at = 301 * 60_000
    for target in (0.3, 0.5, 0.9):
        threshold = model.threshold(at, target)
        first = next(count for count in range(100_000) if model.score_one(at, count) >= target)
        assert first - 1 < threshold.value <= first
        assert threshold.expected == model.assess(at, 0).expected


def test_the_models_own_defaults_are_the_configs() -> None:
    assert model_params(TrafficAnomalyConfig(), two_sided=True, unit=1.0) == SeasonalParams(unit=1.0, two_sided=True)


def _write_series(path: Path, header: list[str] | None, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def test_score_series_round_trip_uses_the_detectors_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(2)
    rows = []
    for hour in range(24 * 10):
        value = 200 + 80 * math.sin(2 * math.pi * hour / 24) + rng.gauss(0, 8)
        if hour == 200:
            value *= 4  # the one anomaly
        rows.append([f"2024-03-{1 + hour // 24:02d} {hour % 24:02d}:00:00", f"{value:.3f}", str(int(hour == 200))])
    source, scored = tmp_path / "in.csv", tmp_path / "out.csv"
    _write_series(source, ["TimeStamp", "Value", "Label"], rows)

    assert main(["score-series", str(source), "--output", str(scored)]) == 0
    assert "240 points" in capsys.readouterr().out
    with scored.open(newline="") as handle:
        output = list(csv.reader(handle))
    assert output[0] == ["timestamp", "value", "anomaly_score"]
    assert [row[:2] for row in output[1:]] == [row[:2] for row in rows]
    scores = [float(row[2]) for row in output[1:]]
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert scores.index(max(scores)) == 200 and scores[200] > 0.9
    assert sum(score >= 0.5 for score in scores) <= 3
    expected = score_points(read_series(source), series_params(TrafficAnomalyConfig()))
    assert scores == [round(s or 0.0, 6) for s in expected]


def test_score_series_reads_headerless_epoch_rows_and_names_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, scored = tmp_path / "in.csv", tmp_path / "out.csv"
    _write_series(source, None, [[str(1_700_000_000_000 + i * 60_000), str(10 + i % 3)] for i in range(50)])
    assert main(["score-series", str(source), "--output", str(scored)]) == 0
    assert len(scored.read_text().splitlines()) == 51
    _write_series(source, ["timestamp", "value"], [["2024-01-01T00:00:00Z", "1"], ["2024-01-01T00:01:00Z", "x"]])
    assert main(["score-series", str(source), "--output", str(scored)]) == 2
    assert "line 3: value" in capsys.readouterr().err


def test_nab_scoring_rewards_early_detection_and_charges_false_alarms() -> None:
    labels = [0] * 1000
    labels[500:505] = [1] * 5
    timestamps = list(range(0, 60_000 * 1000, 60_000))
    (window,) = anomaly_windows(labels)
    assert window.start == 500 - 50 and window.end == 504 + 50

    def at(*indices: int) -> list[float]:
        return [1.0 if i in indices else 0.0 for i in range(1000)]

    early, late = score_series(at(455), labels, timestamps, 0.5), score_series(at(550), labels, timestamps, 0.5)
    assert early.raw > late.raw > 0 and early.detected == 1
    missed = score_series(at(), labels, timestamps, 0.5)
    assert missed.raw == -1.0
    noisy = score_series(at(455, 300), labels, timestamps, 0.5)
    assert noisy.raw == pytest.approx(early.raw - 0.11)
    assert (noisy.onsets, noisy.true_onsets) == (2, 1)
    assert score_series(at(100), labels, timestamps, 0.5).onsets == 0, "probationary points are not scored"


def test_lanes_learned_together_score_as_each_series_learned_alone() -> None:
    # The traffic detector's signals share a state (one clock, one array); each lane must still be its own model.
    rng = random.Random(11)
    units = (10.0, 25.0, 10.0)
    series = [
        (minute * 60_000, (float(poisson(rng, 8.0)), rng.uniform(0, 400), float(poisson(rng, 0.5))))
        for minute in range(0, 900, rng.choice([1, 2, 3]))
    ]
    params = model_params(TrafficAnomalyConfig(), two_sided=False, unit=None)
    shared = SeasonalState(lanes=3)
    learn = lane_learner(params, units)
    alone = [SeasonalModel(dataclasses.replace(params, unit=unit)) for unit in units]
    for start in range(0, len(series), 7):
        learn(shared, series[start : start + 7])
        for lane, model in enumerate(alone):
            model.learn_many((ts, values[lane]) for ts, values in series[start : start + 7])
    together = [SeasonalModel(model.params, shared, lane=lane) for lane, model in enumerate(alone)]
    at = 901 * 60_000
    for lane_model, model in zip(together, alone, strict=True):
        assert lane_model.state.n == model.state.n > 0
        for value in (0.0, 5.0, 50.0, 500.0):
            assert lane_model.assess(at, value) == model.assess(at, value)
    restored = SeasonalState.load(json.loads(json.dumps(shared.dump())))
    assert restored.dump() == shared.dump()
    with pytest.raises(ValueError):
        together[0].learn_one(at, 1.0)


def _zeros(count: int) -> str:
    """``count`` 32-bit zeros as a dump holds them."""
    return base64.b64encode(bytes(4 * count)).decode()


def _every_lane(state: SeasonalState) -> list[list[float]]:
    """The slot weights and each lane's numbers, zeros for a lane the state does not hold."""
    values = state.values.tolist() or [0.0] * _LANES
    return [values[:_LANES]] + [
        values[state.lane_offset(lane) : state.lane_offset(lane) + LANE_SIZE]
        if state.stirred >> lane & 1
        else [0.0] * LANE_SIZE
        for lane in range(state.lanes)
    ]


def test_lanes_that_only_ever_learned_zeros_are_neither_stored_nor_learned_and_that_changes_nothing() -> None:
    # A key that never errs and never spends: its error and credits lanes stay all zeros, so they are skipped.
    rng = random.Random(12)
    params = model_params(TrafficAnomalyConfig(), two_sided=False, unit=10.0)
    learn = lane_learner(params, (10.0, 10.0, 10.0))
    points = [(minute * 60_000, (float(poisson(rng, 5.0)), 0.0, 0.0 if minute < 500 else 1.0)) for minute in range(600)]
    skipping = SeasonalState(lanes=3)
    # The reference holds and learns every lane from the start, zeros included.
    learning_every_lane = SeasonalState.load(
        {"lanes": 3, "n": 0, "last_ts_ms": None, "unit": None, "pending": [], "stirred": 0b111,
         "values": _zeros(_LANES + 3 * LANE_SIZE)}
    )
    assert skipping.dump()["values"] == "", "a state that has learned nothing holds no numbers"
    for start in range(0, len(points), 5):
        learn(skipping, points[start : start + 5])
        learn(learning_every_lane, points[start : start + 5])
        assert _every_lane(skipping) == _every_lane(learning_every_lane)
    assert skipping.stirred == 0b101  # the credits lane never moved; errors began at minute 500
    assert len(skipping.values) == _LANES + 2 * LANE_SIZE
    restored = SeasonalState.load(json.loads(json.dumps(skipping.dump())))
    assert restored.stirred == 0b101 and restored.values == skipping.values
    for lane in range(3):
        sparse, full = SeasonalModel(params, restored, lane=lane), SeasonalModel(params, learning_every_lane, lane=lane)
        for value in (0.0, 3.0, 30.0):
            assert sparse.assess(600 * 60_000, value) == full.assess(600 * 60_000, value)


def test_a_seasonal_state_refuses_numbers_that_do_not_fit_its_lanes() -> None:
    good = {"lanes": 3, "n": 1, "last_ts_ms": 0, "unit": None, "pending": [], "stirred": 0b001,
            "values": _zeros(_LANES + LANE_SIZE)}
    assert SeasonalState.load(good).lane_offset(0) == _LANES
    with pytest.raises(ValueError, match="cannot hold"):
        SeasonalState.load({**good, "stirred": 0b011})
    with pytest.raises(ValueError, match="cannot have stirred lanes"):
        SeasonalState.load({**good, "stirred": 0b1000})
    with pytest.raises(ValueError, match="cannot hold"):
        SeasonalState.load({**good, "values": ""})
    with pytest.raises(ValueError, match="holds no values"):
        SeasonalState.load({**good, "stirred": 0, "values": ""})
    with pytest.raises(ValueError, match="not a whole number"):
        SeasonalState.load({**good, "values": base64.b64encode(bytes(4 * (_LANES + LANE_SIZE) + 2)).decode()})


def test_the_traffic_window_refuses_buckets_it_cannot_count(make_event: EventFactory) -> None:
    learner = lane_learner(SeasonalParams(), (1.0, 1.0, 1.0))
    settings = {
        "min_events": 20, "min_credits": 200.0, "min_errors": 15, "min_error_share": 0.5,
        "error_statuses": [401, 403, 429], "cooldown_ms": 3_600_000,
    }
    with pytest.raises(ValueError, match="buckets of at least 1 ms"):
        TrafficWindow(bucket_ms=0, max_gap_buckets=120, learner=learner, **settings)
    window = TrafficWindow(bucket_ms=60_000, max_gap_buckets=120, learner=learner, **settings)
    accounts = SubjectStore(lambda now: TrafficSubject(now, SeasonalState(lanes=3)), dict, 10, 10**9)
    keys = SubjectStore(lambda now: TrafficSubject(now, SeasonalState(lanes=2)), dict, 10, 10**9)
    # The first bucket: nothing to learn yet.
    assert window.step(accounts, keys, [make_event(1, credits=1)], 0) is None
    with pytest.raises(ValueError, match="a learner of 3 lanes for a 2-lane state"):
        window.step(accounts, keys, [make_event(61, credits=1)], 0)  # closing it learns each
