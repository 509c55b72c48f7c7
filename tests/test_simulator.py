"""The simulator: deterministic, contract-valid, realistic enough, and with the scenarios it claims."""

from __future__ import annotations

import gzip
import json
import statistics
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from models import ScenarioKind, ScenarioTruth, SubjectType, TelemetryEvent
from models.timestamps import parse_timestamp
from streams.simulator import (
    BENIGN_LOOKALIKE_PROMPTS,
    MINOR_SAFETY_TEST_PROMPTS,
    SimulationSpec,
    simulate,
    write_simulation,
)

# Small enough to run in well under a second, long enough for the 90-minute clean history.
SMALL = SimulationSpec(accounts=40, duration_s=3 * 3600, seed=11, scenarios_per_kind=2)


@pytest.fixture(scope="module")
def small() -> tuple[list[dict[str, Any]], list[ScenarioTruth]]:
    events, truth = simulate(SMALL)
    return list(events), truth


def _network(ip: str) -> str:
    return ":".join(ip.split(":")[:2]) if ":" in ip else ".".join(ip.split(".")[:2])


def _of_key(events: list[dict[str, Any]], truth: ScenarioTruth) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["api_key_id"] == truth.api_key_id and truth.start <= parse_timestamp(e["ts"]) <= truth.end
    ]


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.jsonl" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (11, 11, 12), strict=True):
        write_simulation(replace(SMALL, seed=seed), path, path.with_suffix(".truth"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].with_suffix(".truth").read_bytes() == paths[1].with_suffix(".truth").read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_events_match_the_contract_exactly(small: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    events, _ = small
    fields = set(TelemetryEvent.model_fields)
    for event in events:
        assert set(event) == fields
        TelemetryEvent.model_validate(event)
    assert len({e["event_id"] for e in events}) == len(events)


def test_events_sorted_by_time_then_id(small: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    events, _ = small
    keys = [(parse_timestamp(e["ts"]), e["event_id"]) for e in events]
    assert keys == sorted(keys)
    assert all(e["ts"].endswith("Z") and len(e["ts"]) == len("2026-01-05T00:00:00.000Z") for e in events)


def test_each_kind_injected_as_requested(small: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    _, truth = small
    assert Counter(t.scenario for t in truth) == {kind: SMALL.scenarios_per_kind for kind in ScenarioKind}
    assert len({t.scenario_id for t in truth}) == len(truth)
    assert len({t.account_id for t in truth}) == len(truth), "one scenario per account"
    assert {t.scenario_id for t in truth} >= {"sc-traffic_surge-01", "sc-crawler-02"}


def test_truth_windows_inside_span_after_clean_history(
    small: tuple[list[dict[str, Any]], list[ScenarioTruth]],
) -> None:
    events, truth = small
    accounts = {e["account_id"] for e in events}
    earliest = SMALL.start + timedelta(seconds=SMALL.clean_history_s)
    for t in truth:
        assert earliest <= t.start <= t.end <= SMALL.start + timedelta(seconds=SMALL.duration_s)
        assert t.account_id in accounts
        key_subject = t.scenario in (ScenarioKind.KEY_SHARING, ScenarioKind.CRAWLER)
        assert t.subject_type is (SubjectType.API_KEY if key_subject else SubjectType.ACCOUNT)
        assert t.subject_id == (t.api_key_id if key_subject else t.account_id)


def test_crawler_is_regular_sequential_and_read_only(
    small: tuple[list[dict[str, Any]], list[ScenarioTruth]],
) -> None:
    events, truth = small
    for t in truth:
        if t.scenario is not ScenarioKind.CRAWLER:
            continue
        mine = _of_key(events, t)
        assert len(mine) >= 300
        times = [parse_timestamp(e["ts"]).timestamp() for e in mine]
        gaps = [b - a for a, b in pairwise(times)]
        assert 1.0 <= statistics.mean(gaps) <= 3.0
        assert statistics.pstdev(gaps) / statistics.mean(gaps) < 0.15
        ids = [int(e["resource_id"].removeprefix("vid_")) for e in mine if e["resource_id"]]
        assert all(b == a + 1 for a, b in pairwise(ids))
        assert all(e["method"] == "GET" and e["credits"] == 0 for e in mine)
        assert sum(e["status"] == 404 for e in mine) > len(mine) / 3
        assert not any(e["api_key_id"] == t.api_key_id for e in events if parse_timestamp(e["ts"]) < t.start)


def test_key_sharing_spans_many_networks_with_impossible_travel(
    small: tuple[list[dict[str, Any]], list[ScenarioTruth]],
) -> None:
    events, truth = small
    for t in truth:
        if t.scenario is not ScenarioKind.KEY_SHARING:
            continue
        mine = _of_key(events, t)
        assert len({_network(e["ip"]) for e in mine}) >= 6
        assert len({e["device_id"] for e in mine}) >= 6
        assert t.end - t.start >= timedelta(minutes=25)


def test_benign_keys_stay_on_few_networks(small: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    events, truth = small
    shared = {t.api_key_id for t in truth if t.scenario is ScenarioKind.KEY_SHARING}
    networks: dict[str, set[str]] = {}
    for e in events:
        networks.setdefault(e["api_key_id"], set()).add(_network(e["ip"]))
    assert all(len(nets) <= 3 for key, nets in networks.items() if key not in shared)


def test_traffic_surge_multiplies_the_rate(small: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    events, truth = small
    for t in truth:
        if t.scenario is not ScenarioKind.TRAFFIC_SURGE:
            continue
        times = [parse_timestamp(e["ts"]) for e in events if e["account_id"] == t.account_id]
        before = sum(SMALL.start <= ts < t.start for ts in times) / (t.start - SMALL.start).total_seconds()
        during = sum(t.start <= ts <= t.end for ts in times) / (t.end - t.start).total_seconds()
        assert during > 8 * before


def test_prompts_lookalikes_common_and_minor_probes_only_on_their_scenarios(
    small: tuple[list[dict[str, Any]], list[ScenarioTruth]],
) -> None:
    events, truth = small
    assert sum(e["prompt"] in BENIGN_LOOKALIKE_PROMPTS for e in events) >= 10
    probes = [e for e in events if e["prompt"] in MINOR_SAFETY_TEST_PROMPTS]
    minor = {t.account_id: t for t in truth if t.scenario is ScenarioKind.MINOR_SAFETY}
    assert probes and {e["account_id"] for e in probes} == set(minor)
    for account_id, t in minor.items():
        times = [parse_timestamp(e["ts"]) for e in probes if e["account_id"] == account_id]
        assert 1 <= len(times) <= 3
        assert (min(times), max(times)) == (t.start, t.end)
    generation = [e for e in events if e["method"] == "POST"]
    assert all(e["prompt"] for e in generation)
    assert all(e["prompt"] is None for e in events if e["method"] == "GET")


def test_gz_output_round_trips(tmp_path: Path) -> None:
    summary = write_simulation(SMALL, tmp_path / "events.jsonl.gz", tmp_path / "truth.jsonl")
    with gzip.open(tmp_path / "events.jsonl.gz", "rt", encoding="utf-8") as handle:
        events = [json.loads(line) for line in handle]
    expected, truth = simulate(SMALL)
    assert events == list(expected)
    assert summary.events == len(events)
    assert summary.accounts == SMALL.accounts
    assert summary.scenarios == {kind.value: SMALL.scenarios_per_kind for kind in ScenarioKind}
    lines = (tmp_path / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    assert [ScenarioTruth.model_validate_json(line) for line in lines] == truth


def test_default_spec_volume_and_shape() -> None:
    events, truth = simulate(SimulationSpec())
    per_account = Counter(e["account_id"] for e in events)
    assert 100_000 <= sum(per_account.values()) <= 300_000
    assert len(truth) == 12
    rates = sorted(count / 360 for count in per_account.values())
    assert 0.5 <= statistics.median(rates) <= 5
    assert rates[-1] >= 30, "a few big accounts"


def test_spec_refuses_impossible_requests() -> None:
    with pytest.raises(ValueError):
        SimulationSpec(accounts=10, scenarios_per_kind=3)
    with pytest.raises(ValueError):
        SimulationSpec(start=datetime(2026, 1, 5))  # naive
    with pytest.raises(ValueError):
        SimulationSpec(duration_s=3600)
    assert SimulationSpec(start=datetime(2026, 1, 5, tzinfo=UTC)).accounts == 200


def test_every_simulated_prefix_geolocates_to_its_country_in_the_bundled_dataset() -> None:
    from detectors.geo import open_geolocator
    from streams.simulator import _COUNTRIES

    geo = open_geolocator()
    for country, _, _, v4_prefixes, v6_prefixes in _COUNTRIES:
        for prefix in v4_prefixes:
            assert {geo.locate(f"{prefix}.{third}.9").country for third in (0, 63, 128, 191, 255)} == {country}, prefix
        for prefix in v6_prefixes:
            assert geo.locate(f"{prefix}:1234:5678::9").country == country, prefix


HARD = SimulationSpec(accounts=40, duration_s=3 * 3600, seed=12, scenarios_per_kind=1, hard=True)


@pytest.fixture(scope="module")
def hard() -> tuple[list[dict[str, Any]], list[ScenarioTruth]]:
    events, truth = simulate(HARD)
    return list(events), truth


def test_hard_variants_are_labelled(hard: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    _, truth = hard
    assert sorted((t.scenario.value, t.variant) for t in truth) == sorted(
        [(kind.value, "basic") for kind in ScenarioKind]
        + [("traffic_surge", "ramp"), ("key_sharing", "residential_proxies"), ("crawler", "slow_rotating")]
    )
    basic_only = {(t.scenario, t.subject_id) for t in simulate(replace(HARD, hard=False))[1]}
    assert basic_only <= {(t.scenario, t.subject_id) for t in truth}


def test_slow_crawler_is_jittered_rotates_agents_and_skips_ids(
    hard: tuple[list[dict[str, Any]], list[ScenarioTruth]],
) -> None:
    events, truth = hard
    (t,) = [t for t in truth if t.variant == "slow_rotating"]
    mine = _of_key(events, t)
    gaps = [parse_timestamp(b["ts"]) - parse_timestamp(a["ts"]) for a, b in pairwise(mine)]
    seconds = [g.total_seconds() for g in gaps]
    assert statistics.pstdev(seconds) / statistics.fmean(seconds) > 0.4
    assert statistics.fmean(seconds) > 5
    assert len({e["user_agent"] for e in mine}) >= 5
    ids = [int(e["resource_id"].split("_")[1]) for e in mine if e["resource_id"]]
    assert all(1 <= b - a <= 3 for a, b in pairwise(ids)) and any(b - a > 1 for a, b in pairwise(ids))


def test_proxy_sharing_has_many_devices_behind_three_addresses(
    hard: tuple[list[dict[str, Any]], list[ScenarioTruth]],
) -> None:
    events, truth = hard
    (t,) = [t for t in truth if t.variant == "residential_proxies"]
    home = {e["ip"] for e in events if e["account_id"] == t.account_id and parse_timestamp(e["ts"]) < t.start}
    shared = [e for e in _of_key(events, t) if e["ip"] not in home]
    assert len({e["ip"] for e in shared}) == 3
    assert len({e["device_id"] for e in shared}) >= 8


def test_ramp_surge_grows(hard: tuple[list[dict[str, Any]], list[ScenarioTruth]]) -> None:
    events, truth = hard
    (t,) = [t for t in truth if t.variant == "ramp"]
    mine = [parse_timestamp(e["ts"]) for e in events if e["account_id"] == t.account_id]
    mine = [ts for ts in mine if t.start <= ts <= t.end]
    half = t.start + (t.end - t.start) / 2
    assert sum(ts > half for ts in mine) > 1.8 * sum(ts <= half for ts in mine)


def test_more_accounts_than_a_country_has_networks_still_simulates() -> None:
    # US has 2,048 simulated /24s; 8,000 accounts need more, so households share them.
    spec = SimulationSpec(accounts=8_000, duration_s=120, seed=3, scenarios_per_kind=0, median_rate_per_min=0.05)
    events, truth = simulate(spec)
    assert truth == [] and sum(1 for _ in events) > 0
