"""The crawler's compact window against a plain recomputation over the kept calls.

The window keeps flags and counts instead of lists of calls and reproduces ``statistics`` (fmean,
pstdev, median) exactly; these tests replay random streams with late events, eviction by time and by
count, and odd resource ids, and recompute every feature from a plain list of the calls in the window.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from dataclasses import dataclass
from itertools import pairwise

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import native
from detectors.crawler import CrawlerDetector, window_features
from detectors.crawler.detector import _sqrt_of_ratio, numbered_read
from models.config import CrawlerConfig, StateConfig
from tests.conftest import EventFactory

AGENTS = [None, "python-requests/2.32.3", "Scrapy/2.11.0 (+https://scrapy.org)"] + [
    f"Mozilla/5.0 Chrome/{version}.0" for version in range(6)
]
RESOURCE_IDS = [None, "", "vid_{n}", "vid_{m}", "abc", "99999999999999999999999", "x-{n}"]


@dataclass
class Call:
    ms: int
    generating: bool
    not_found: bool
    agent: str | None


def expected_features(calls: list[Call], numbers: list[int], automation: bool, cfg: CrawlerConfig) -> dict[str, float]:
    steps = [b - a for a, b in pairwise(numbers)]
    gaps = [b.ms - a.ms for a, b in pairwise(calls)]
    mean_gap = statistics.fmean(gaps) if gaps else 0.0
    median_gap = statistics.median(gaps) if gaps else 0.0
    tolerance = cfg.periodic_tolerance * median_gap
    return {
        "requests": float(len(calls)),
        "generation_share": sum(c.generating for c in calls) / len(calls),
        "not_found_share": sum(c.not_found for c in calls) / len(calls),
        "forward_step_share": sum(0 < s <= cfg.max_id_step for s in steps) / len(steps) if len(steps) >= 2 else 0.0,
        "numbered_reads": float(len(numbers)),
        "user_agents": float(len({c.agent or "" for c in calls})),
        "automation_agent": float(automation),
        "gap_cv": statistics.pstdev(gaps) / mean_gap if mean_gap > 0 else 1.0,
        "periodic_share": sum(abs(g - median_gap) <= tolerance for g in gaps) / len(gaps) if median_gap > 0 else 0.0,
    }


@pytest.mark.parametrize("seed", range(12))
def test_window_features_match_a_plain_recomputation(make_event: EventFactory, seed: int) -> None:
    rng = random.Random(seed)
    cfg = CrawlerConfig(min_requests=5, max_window_events=16 + 3 * seed, window_s=60 + 10 * seed, evaluate_every=1)
    state = StateConfig(idle_ttl_s=365 * 86_400)  # the weeks-long gaps below are not to forget the key
    detector = CrawlerDetector(cfg, state)
    calls: list[Call] = []
    numbers: list[int] = []
    automation = False
    second = 0.0
    for index in range(600):
        if index == 300:  # the window survives a snapshot through JSON
            snapshot = json.loads(json.dumps(detector.snapshot()))
            detector = CrawlerDetector(cfg, state)
            detector.restore(snapshot)
        # Regular, jittered, simultaneous, late (out of order) and idle gaps.
        second += rng.choice([1.0, rng.uniform(0.9, 1.1), 0.0, -rng.uniform(0, 3), rng.uniform(0, 200)])
        if rng.random() < 0.01:  # weeks idle, or weeks late: call times no longer fit 32 bits from the base
            second += rng.choice([1, -1]) * rng.uniform(20, 40) * 86_400
        second = round(second, 3)
        agent = rng.choice(AGENTS[: rng.choice([2, 3, len(AGENTS)])])
        method = rng.choice(["GET", "get", "POST", "PUT", "DELETE"])
        resource = rng.choice(RESOURCE_IDS)
        resource = resource and resource.format(n=index + rng.randint(-2, 6), m=rng.randint(0, 30))
        event = make_event(second, user_agent=agent, method=method, status=rng.choice([200, 404]), resource_id=resource)
        detector.observe(event)

        calls.append(Call(event.ts_ms, method.upper() in {"POST", "PUT", "PATCH"}, event.status == 404, agent))
        old = 0
        while calls[old].ms < event.ts_ms - cfg.window_s * 1000:
            old += 1
        del calls[: max(old, len(calls) - cfg.max_window_events)]
        match = re.search(r"(?:^|[^A-Za-z0-9])(\d+)$", resource or "")
        if match and method.upper() == "GET" and int(match.group(1)) < 1 << 63:  # longer: an opaque token
            numbers = [*numbers, int(match.group(1))][-cfg.max_window_events :]
        automation = automation or (agent is not None and "Scrapy" in agent)

        activity = dict(detector.keys.items())["acct-1/key-1"]
        assert activity.call_times() == [c.ms for c in calls]
        assert window_features(activity, cfg) == expected_features(calls, numbers, automation, cfg)


def test_call_times_take_four_bytes_and_move_to_a_new_base_when_they_outgrow_it(make_event: EventFactory) -> None:
    day = 86_400.0
    cfg = CrawlerConfig(min_requests=5, window_s=int(60 * day), evaluate_every=1)
    state = StateConfig(idle_ttl_s=365 * 86_400)
    detector = CrawlerDetector(cfg, state)
    seconds = [0.0, 1.0, 2.0, 30 * day, 30 * day + 1, 2.5, 61 * day, 61 * day + 5, 200 * day]
    kinds, kept = [], []
    for second in seconds:
        event = make_event(second)
        detector.observe(event)
        activity = dict(detector.keys.items())["acct-1/key-1"]
        kept.append(event.ts_ms)
        while kept[0] < event.ts_ms - cfg.window_s * 1000:
            kept.pop(0)
        assert activity.call_times() == kept
        restored = CrawlerDetector(cfg, state)
        restored.restore(json.loads(json.dumps(detector.snapshot())))
        assert dict(restored.keys.items())["acct-1/key-1"].call_times() == kept
        kinds.append(activity.offset_bits)
    # 32 bits from the start; 64 while the window spans more than ~24 days (30 days on, then a call 30 days
    # late that stays behind newer ones); 32 again, from a new base, once a long idle spell empties it.
    assert kinds == [32, 32, 32, 64, 64, 64, 64, 64, 32]
    assert activity.offset_bits == 32 and activity.time_base_ms == kept[-1]


def test_an_id_numbered_past_64_bits_is_a_token_and_the_window_still_dumps(make_event: EventFactory) -> None:
    # A state record is JSON that orjson writes: one client's 30-digit id must not stop every checkpoint.
    detector = CrawlerDetector(CrawlerConfig(), StateConfig())
    for second, resource in enumerate(["vid_9223372036854775806", "vid_123456789012345678901234567890", "vid_7"]):
        detector.observe(make_event(second, method="GET", resource_id=resource))
    activity = dict(detector.keys.items())["acct-1/key-1"]
    record = orjson.loads(orjson.dumps(detector.snapshot()))["keys"]["acct-1/key-1"]
    assert record["last_number"] == 7 and record["forward_steps"] == "0000"  # two reads: the 30-digit id is none
    assert activity.content_counts()[4] == 2


def test_square_root_is_rounded_as_statistics_rounds_it() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        gaps = [rng.choice([rng.randint(-5, 5), rng.randint(0, 10 ** rng.randint(1, 13))]) for _ in range(40)]
        count, total = len(gaps), sum(gaps)
        assert _sqrt_of_ratio(count * sum(g * g for g in gaps) - total * total, count * count) == statistics.pstdev(
            gaps
        )


@settings(max_examples=3000, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("0123456789aZ_-./ \n\t#9"), max_size=30)
    | st.from_regex(r"[ -~\n]{0,40}", fullmatch=True)
)
def test_the_compiled_step_reads_an_ascii_id_as_the_regular_expression_does(text: str) -> None:
    assert native.ascii_trailing_number(text) == numbered_read(text)


def test_an_id_in_another_script_is_read_by_python_and_methods_are_upper_cased_as_python_does(
    make_event: EventFactory,
) -> None:
    # Arabic-Indic digits are digits to Python's \d and int(); "ſ" (long s) upper-cases to "S" in Python.
    detector = CrawlerDetector(CrawlerConfig(), StateConfig())
    reads = [("GET", "vid_\u0661\u0662"), ("get", "vid_13"), ("GET", "vid_\u0661\u0664"), ("po\u017ft", "x")]
    for second, (method, resource) in enumerate(reads):
        detector.observe(make_event(second, method=method, resource_id=resource))
    record = orjson.loads(orjson.dumps(detector.snapshot()))["keys"]["acct-1/key-1"]
    assert numbered_read("vid_\u0661\u0662") == 12
    assert record["last_number"] == 14  # 12, 13, 14: three numbered reads in a row
    activity = dict(detector.keys.items())["acct-1/key-1"]
    assert activity.content_counts()[4] == 3
    assert activity.content_counts()[1] == 1  # "poſt" is a POST
    with pytest.raises(ValueError, match="not ASCII"):
        native.ascii_trailing_number("vid_\u0661")
