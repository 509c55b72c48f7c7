"""Key-sharing and crawler logic on small hand-made sequences, including the traps they must not fall into.

Addresses are real ranges that the bundled DB-IP Lite database places where the comments say.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.crawler import CrawlerDetector, agent_class
from detectors.key_sharing import KeySharingDetector
from detectors.native import SlidingDistinct
from detectors.networks import subnet_of
from models.config import CrawlerConfig, KeySharingConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent
from tests.conftest import EventFactory

STATE = StateConfig()
US_HOME, US_OFFICE = "24.0.5.9", "24.3.77.9"  # Comcast, US
SINGAPORE, GERMANY, BRITAIN, JAPAN, BRAZIL = "116.15.3.9", "79.192.3.9", "81.78.3.9", "60.33.3.9", "177.0.3.9"
T_MOBILE_US = ("172.56.1.9", "172.58.100.9", "172.56.200.9", "172.57.30.9")  # AS21928, spread over the US
AWS = ("3.5.6.7", "13.250.1.9", "18.184.1.9", "52.74.1.9")  # us-east, Singapore, Frankfurt, Singapore


def run(detector: KeySharingDetector | CrawlerDetector, events: list[TelemetryEvent]) -> list[Finding]:
    return [finding for event in events for finding in detector.observe(event)]


def sharing(**overrides: Any) -> KeySharingDetector:
    return KeySharingDetector(KeySharingConfig(**overrides), STATE)


def key_findings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.subject_type is SubjectType.API_KEY]


def test_us_then_singapore_minutes_later_is_impossible_travel(make_event: EventFactory) -> None:
    events = [make_event(0, ip=US_HOME), make_event(60, ip=US_HOME), make_event(360, ip=SINGAPORE)]
    findings = key_findings(run(sharing(), events))
    assert len(findings) == 1
    hop = findings[0].evidence["rules"]["impossible_travel"]
    assert (hop["from"], hop["to"]) == ("US", "SG") and hop["km"] > 15_000 and hop["km_per_h"] > 100_000
    assert findings[0].clauses == ["3.8", "10.3"] and findings[0].subject_id == "key-1"


def test_a_real_flight_is_not_impossible_travel(make_event: EventFactory) -> None:
    events = [make_event(0, ip=US_HOME), make_event(14 * 3600, ip=GERMANY), make_event(15 * 3600, ip=GERMANY)]
    assert run(sharing(), events) == []


def test_back_and_forth_between_distant_countries_is_concurrent_use(make_event: EventFactory) -> None:
    detector = sharing(max_speed_kmh=10**9)  # isolate the concurrency rule from impossible travel
    events = [make_event(minute * 60, ip=US_HOME if minute % 2 else GERMANY) for minute in range(8)]
    findings = key_findings(run(detector, events))
    assert len(findings) == 1
    assert "concurrent_use" in findings[0].evidence["rules"] and findings[0].severity is Severity.HIGH


def test_many_countries_in_the_window_is_spread_and_flags_the_account_too(make_event: EventFactory) -> None:
    detector = sharing(min_travel_km=50_000)  # no hop is ever long enough: only the counts can flag
    events = [make_event(i * 300, ip=ip) for i, ip in enumerate((US_HOME, GERMANY, BRITAIN, JAPAN, BRAZIL))]
    findings = run(detector, events)
    assert {f.subject_type for f in findings} == {SubjectType.API_KEY, SubjectType.ACCOUNT}
    assert all(f.evidence["rules"]["country_spread"]["countries"] == 4 for f in findings)


def test_two_home_networks_of_one_country_are_not_sharing(make_event: EventFactory) -> None:
    events = [make_event(i * 30, ip=US_HOME if i % 2 else US_OFFICE) for i in range(200)]
    assert run(sharing(), events) == []


def test_a_mobile_carrier_hopping_across_the_country_is_not_sharing(make_event: EventFactory) -> None:
    events = [make_event(i * 20, ip=T_MOBILE_US[i % 4] if i % 3 else US_HOME) for i in range(120)]
    assert run(sharing(), events) == []


def test_carrier_grade_nat_addresses_are_not_sharing(make_event: EventFactory) -> None:
    events = [make_event(i * 10, ip=f"100.{64 + i % 60}.{i % 250}.9") for i in range(200)]
    events += [make_event(2000 + i, ip=GERMANY) for i in range(3)]
    assert run(sharing(), events) == []


def test_cloud_egress_in_several_regions_is_not_sharing(make_event: EventFactory) -> None:
    events = [make_event(i * 15, ip=AWS[i % 4] if i % 5 else US_HOME) for i in range(200)]
    assert run(sharing(), events) == []


def test_a_corporate_nat_with_many_devices_is_not_sharing(make_event: EventFactory) -> None:
    events = [
        make_event(i * 5, ip=US_OFFICE, device_id=f"laptop-{i % 40}", user_agent=f"warden-sdk-python/1.{i % 12}")
        for i in range(400)
    ]
    assert run(sharing(), events) == []


def test_many_devices_through_a_few_proxies_abroad_is_a_device_crowd(make_event: EventFactory) -> None:
    detector = sharing(min_travel_km=50_000)
    proxies = (GERMANY, BRITAIN)
    events = [
        make_event(i * 20, ip=proxies[i % 2], device_id=f"dev-{i % 10}", user_agent=f"client/{i % 10}")
        for i in range(60)
    ]
    findings = key_findings(run(detector, events))
    assert findings and "device_crowd" in findings[0].evidence["rules"]


def test_sharing_cooldown_and_snapshot_restore(make_event: EventFactory) -> None:
    events = [make_event(i * 60, ip=(US_HOME, SINGAPORE, GERMANY, JAPAN)[i % 4]) for i in range(120)]
    straight = sharing(cooldown_s=3600)
    expected = run(straight, events)
    assert len(key_findings(expected)) == 2  # 2 hours of sharing, one finding per hour of cooldown
    first = sharing(cooldown_s=3600)
    head = run(first, events[:50])
    restored = sharing(cooldown_s=3600)
    restored.restore(json.loads(json.dumps(first.snapshot())))
    assert head + run(restored, events[50:]) == expected


def test_subnets_are_sites() -> None:
    assert subnet_of("198.51.100.7") == subnet_of("198.51.100.200") == "198.51.100.0/24"
    assert subnet_of("2001:db8:1:2::1") == subnet_of("2001:db8:1:ffff::2") == "2001:db8:1::/48"
    assert subnet_of("junk") != subnet_of("other junk")


@settings(max_examples=40, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 10**7), st.text(min_size=1, max_size=8)), max_size=400))
def test_sliding_sketch_stays_under_its_cap_and_never_overcounts_much(items: list[tuple[int, str]]) -> None:
    sketch = SlidingDistinct(precision=6, pane_ms=900_000, panes=4)
    for now, item in sorted(items):
        sketch.add(item, now)
        assert len(sketch.starts) <= 4
        assert len(base64.b64decode(sketch.dump()["registers"])) == 64 * len(sketch.starts)
    if items:
        last = max(now for now, _ in items)
        recent = {item for now, item in items if now >= last - last % 900_000 - 3 * 900_000}
        assert sketch.count(last) <= 1.5 * len(recent) + 2
        assert SlidingDistinct.load(json.loads(json.dumps(sketch.dump()))).count(last) == sketch.count(last)


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.integers(0, 10**7), st.integers(0, 2), st.text(min_size=1, max_size=6)), max_size=300
    )
)
def test_kinds_sharing_one_sliding_sketch_count_as_a_sketch_each(items: list[tuple[int, int, str]]) -> None:
    # A key's devices, agents, networks... share panes and one buffer; each kind must still count alone.
    shared = SlidingDistinct(precision=6, pane_ms=900_000, panes=4)  # widens as the later kinds come
    alone = [SlidingDistinct(precision=6, pane_ms=900_000, panes=4) for _ in range(3)]
    for step, (now, kind, item) in enumerate(sorted(items)):
        assert shared.add(item, now, kind) == alone[kind].add(item, now)
        if step % 5 == 0:  # now and then: a count trims the window, and adds must agree between counts too
            assert [shared.count(now, other) for other in range(3)] == [sketch.count(now) for sketch in alone]
    assert shared.dimensions == 1 + max((kind for _, kind, _ in items), default=0)
    restored = SlidingDistinct.load(json.loads(json.dumps(shared.dump())))
    last = max((now for now, _, _ in items), default=0)
    assert [restored.count(last, kind) for kind in range(3)] == [sketch.count(last) for sketch in alone]
    with pytest.raises(ValueError, match="do not match"):
        SlidingDistinct.load({**shared.dump(), "starts": [*shared.dump()["starts"], 10**8]})  # a pane too many


def test_hyperloglog_is_close_on_small_and_large_counts() -> None:
    for true_count, tolerance in ((5, 1), (40, 6), (5000, 1200)):
        sketch = SlidingDistinct(precision=6, pane_ms=1000, panes=1)  # one pane: one HyperLogLog
        for i in range(true_count):
            sketch.add(f"item-{i}", 0)
        assert abs(sketch.count(0) - true_count) <= tolerance


# --- crawlers ----------------------------------------------------------------------------------------


def _crawl(make_event: EventFactory, count: int, gap_s: float = 2.0, **fields: object) -> list[Finding]:
    detector = CrawlerDetector(CrawlerConfig(), STATE)
    findings = []
    for index in range(count):
        defaults: dict[str, object] = {
            "endpoint": "/v1/videos/{id}", "method": "GET", "credits": 0,
            "resource_id": f"vid_{100000 + index}", "status": 404 if index % 3 == 0 else 200,
        }
        defaults.update(fields)
        findings += detector.observe(make_event(index * gap_s, **defaults))
    return findings


@pytest.mark.parametrize(
    ("agent", "kind"),
    [
        ("python-requests/2.32.3", "http_library"),
        ("curl/8.5.0", "http_library"),
        ("Go-http-client/2.0", "http_library"),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "http_library"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36", "automation"),
        ("Scrapy/2.11.0 (+https://scrapy.org)", "automation"),
        ("colly - https://github.com/gocolly/colly", "automation"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0.0.0 Safari/537.36", None),
        ("warden-sdk-python/1.4.2", None),
    ],
)
def test_user_agents_are_classified_from_the_maintained_list(agent: str, kind: str | None) -> None:
    assert agent_class(agent, tuple(CrawlerConfig().automation_description_words)) == kind


def test_headless_enumerating_key_is_flagged_as_crawler(make_event: EventFactory) -> None:
    findings = _crawl(make_event, 80, user_agent="Mozilla/5.0 (X11) HeadlessChrome/120.0.0.0 Safari/537.36")
    assert len(findings) == 1
    signals = findings[0].evidence["signals"]
    assert {"automation_user_agent", "enumeration", "regular_timing", "read_only", "not_found"} <= set(signals)


def test_enumeration_with_an_sdk_agent_is_still_flagged(make_event: EventFactory) -> None:
    assert _crawl(make_event, 80, user_agent="python-requests/2.32.3")


def test_slow_jittered_crawler_rotating_browser_agents_is_flagged(make_event: EventFactory) -> None:
    detector = CrawlerDetector(CrawlerConfig(), STATE)
    browsers = [f"Mozilla/5.0 (Windows NT 10.0) Chrome/{100 + i}.0 Safari/537.36" for i in range(6)]
    findings, second, resource = [], 0.0, 5000
    for index in range(120):
        second += 15 * (0.4 + (index * 7919 % 13) / 10)  # 6 to 24 s apart, no rhythm
        resource += 1 + index % 3  # skips ids in small steps
        findings += detector.observe(make_event(
            second, user_agent=browsers[index % 6], endpoint="/v1/videos/{id}", method="GET", credits=0,
            resource_id=f"vid_{resource}", status=404 if index % 2 else 200,
        ))
    assert len(findings) == 1
    assert {"enumeration", "rotating_user_agents", "not_found"} <= set(findings[0].evidence["signals"])
    assert "regular_timing" not in findings[0].evidence["signals"]


@pytest.mark.parametrize(
    "agent", ["python-requests/2.32.3", "node-fetch/1.0", "Go-http-client/2.0", "curl/8.5.0", "warden-sdk-python/1.4.2"]
)
def test_sdk_client_polling_its_own_job_is_not_a_crawler(make_event: EventFactory, agent: str) -> None:
    detector = CrawlerDetector(CrawlerConfig(), STATE)
    findings = []
    second = 0.0
    for job in range(10):  # generate, then poll that one video every 2 s: regular, read-heavy, legitimate
        findings += detector.observe(make_event(second, user_agent=agent, resource_id=f"vid_{job * 7919}"))
        for _ in range(20):
            second += 2.0
            findings += detector.observe(make_event(
                second, user_agent=agent, endpoint="/v1/videos/{id}", method="GET", credits=0,
                resource_id=f"vid_{job * 7919}",
            ))
    assert findings == []


def test_curl_from_ci_listing_every_minute_is_not_a_crawler(make_event: EventFactory) -> None:
    findings = _crawl(
        make_event, 300, gap_s=60.0, user_agent="curl/8.5.0", endpoint="/v1/videos", resource_id=None, status=200
    )
    assert findings == []
