"""One suite over every registered detector: bounded state, snapshot→restore, determinism, clauses."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.base import Detector
from detectors.registry import REGISTRY
from models.config import StateConfig, WardenConfig
from models.finding import Finding
from models.telemetry import TelemetryEvent
from tests.conftest import EventFactory

TERMS_CLAUSES = {"3.8", "7.1", "8.2.1", "8.2.6", "10.3", "11.1(5)"}


def build(name: str, state: StateConfig | None = None) -> Detector:
    config = WardenConfig()
    section = config.detectors.by_name()[name]
    return REGISTRY[name](section, state or config.state)  # type: ignore[call-arg]


def run(detector: Detector, events: list[TelemetryEvent]) -> list[Finding]:
    return [finding for _, finding in detector.observe_batch(events)]


@pytest.fixture(params=sorted(REGISTRY))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_detector_finds_something_in_the_simulation_and_cites_its_clauses(
    name: str, small_events: list[TelemetryEvent]
) -> None:
    findings = run(build(name), small_events)
    assert findings, f"{name} found nothing in a simulation with injected abuse"
    for finding in findings:
        assert finding.detector == name
        assert set(finding.clauses) <= TERMS_CLAUSES and finding.clauses
        assert finding.window_start <= finding.window_end
        assert 0.0 <= finding.score <= 1.0


def test_replay_is_deterministic(name: str, small_events: list[TelemetryEvent]) -> None:
    first = [f.model_dump_json() for f in run(build(name), small_events)]
    second = [f.model_dump_json() for f in run(build(name), small_events)]
    assert first == second


def test_snapshot_then_restore_gives_identical_findings(name: str, small_events: list[TelemetryEvent]) -> None:
    half = len(small_events) // 2
    straight = build(name)
    run(straight, small_events[:half])
    snapshot = json.loads(json.dumps(straight.snapshot()))  # through JSON, as the changelog carries it
    expected = [f.model_dump_json() for f in run(straight, small_events[half:])]

    restored = build(name)
    restored.restore(copy.deepcopy(snapshot))
    assert restored.snapshot() == snapshot
    assert [f.model_dump_json() for f in run(restored, small_events[half:])] == expected


def test_changelog_changes_rebuild_the_same_state(name: str, small_events: list[TelemetryEvent]) -> None:
    source = build(name)
    for store in source.stores().values():
        store.track_changes = True
    replica = build(name)
    for start in range(0, len(small_events), 997):
        run(source, small_events[start : start + 997])
        for store_name, store in source.stores().items():
            for subject in store.drain_dirty():
                replica.stores()[store_name].apply_change(subject, json.loads(json.dumps(store.dump_of(subject))))
    assert replica.snapshot() == source.snapshot()


subject_ids = st.text(alphabet="abcdef0123456789", min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accounts=st.lists(subject_ids, min_size=1, max_size=200),
    keys=st.lists(subject_ids, min_size=1, max_size=200),
    gaps=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=300),
)
def test_state_stays_under_its_cap_on_random_input(
    name: str, make_event: EventFactory, accounts: list[str], keys: list[str], gaps: list[int]
) -> None:
    cap = 16
    detector = build(name, StateConfig(max_subjects=cap, idle_ttl_s=3600, sweep_interval_s=60))
    now = 0.0
    for index, gap in enumerate(gaps):
        now += gap / 10
        event = make_event(
            now,
            account_id=accounts[index % len(accounts)],
            api_key_id=keys[index % len(keys)],
            ip=f"10.{index % 250}.{gap % 250}.1",
            prompt="sexy teen" if index % 3 == 0 else None,
        )
        detector.observe(event)
        for store in detector.stores().values():
            assert len(store) <= cap


def test_idle_subjects_expire_on_event_time(name: str, make_event: EventFactory) -> None:
    detector = build(name, StateConfig(max_subjects=1000, idle_ttl_s=600, sweep_interval_s=60))
    for second in range(0, 120, 2):
        detector.observe(make_event(second, prompt="sexy teen"))
    assert detector.subject_count() >= 1
    assert detector.expire(watermark_ms=int(make_event(10_000).ts.timestamp() * 1000)) >= 1
    assert detector.subject_count() == 0


def test_batches_find_what_one_event_at_a_time_finds(name: str, small_events: list[TelemetryEvent]) -> None:
    """The compiled steps over a batch stop at every event the rules must judge, and at no state the rules would
    not have seen one event at a time: the same findings, at the same events, and the same state after."""
    one_at_a_time, batched = build(name), build(name)
    expected = [(index, f) for index, event in enumerate(small_events) for f in one_at_a_time.observe(event)]
    found = []
    for start in range(0, len(small_events), 97):
        found += [(start + index, f) for index, f in batched.observe_batch(small_events[start : start + 97])]
    assert expected and found == expected
    assert batched.snapshot() == one_at_a_time.snapshot()
