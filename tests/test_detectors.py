"""Each detector's logic on small hand-made sequences, including the traps it must not fall into."""

from __future__ import annotations

import pytest

from detectors.crawler import CrawlerDetector
from detectors.key_sharing import KeySharingDetector
from detectors.minor_safety import MinorSafetyDetector, redact, score_prompt
from detectors.networks import network_of
from detectors.traffic import TrafficAnomalyDetector
from models.config import (
    CrawlerConfig,
    KeySharingConfig,
    MinorSafetyConfig,
    StateConfig,
    TrafficAnomalyConfig,
)
from models.finding import Severity
from tests.conftest import EventFactory

STATE = StateConfig()


def test_traffic_surge_is_flagged_after_a_steady_history(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    findings = []
    for minute in range(60):  # 5 calls a minute for an hour
        for call in range(5):
            findings += detector.observe(make_event(minute * 60 + call * 10))
    assert findings == []
    for call in range(120):  # then 120 calls in one minute
        findings += detector.observe(make_event(3600 + call * 0.5))
    assert len(findings) == 1
    assert findings[0].clauses == ["7.1", "11.1(5)"]
    assert findings[0].evidence["ratio"] >= 6


def test_a_new_busy_account_is_not_flagged_for_being_new(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(), STATE)
    findings = []
    for call in range(100):  # 100 calls in its first minute: busy, but under the prior x ratio
        findings += detector.observe(make_event(call * 0.6, account_id="brand-new"))
    assert findings == []


def test_traffic_cooldown_suppresses_repeat_findings(make_event: EventFactory) -> None:
    detector = TrafficAnomalyDetector(TrafficAnomalyConfig(cooldown_s=3600), STATE)
    findings = []
    for minute in range(30):
        findings += [f for call in range(2) for f in detector.observe(make_event(minute * 60 + call))]
    for minute in range(30, 40):
        for call in range(200):
            findings += detector.observe(make_event(minute * 60 + call * 0.25))
    assert len(findings) == 1


def test_key_used_from_many_networks_is_flagged_once(make_event: EventFactory) -> None:
    detector = KeySharingDetector(KeySharingConfig(max_networks=4), STATE)
    findings = []
    for index in range(8):
        findings += detector.observe(make_event(index * 60, ip=f"{20 + index * 7}.{index}.1.1"))
    assert len(findings) == 1
    assert findings[0].subject_type.value == "api_key" and findings[0].clauses == ["3.8", "10.3"]
    assert findings[0].evidence["distinct_networks"] == 5


def test_one_network_with_many_addresses_is_not_sharing(make_event: EventFactory) -> None:
    detector = KeySharingDetector(KeySharingConfig(max_networks=2), STATE)
    findings = [f for i in range(200) for f in detector.observe(make_event(i * 5, ip=f"100.64.{i % 256}.{i % 200}"))]
    assert findings == []


def test_networks_outside_the_window_are_forgotten(make_event: EventFactory) -> None:
    detector = KeySharingDetector(KeySharingConfig(max_networks=2, window_s=600), STATE)
    findings = [f for i in range(10) for f in detector.observe(make_event(i * 3600, ip=f"{30 + i}.1.1.1"))]
    assert findings == []


def test_network_of_groups_by_prefix_and_keeps_junk_apart() -> None:
    assert network_of("198.51.100.7") == network_of("198.51.3.9") == "198.51.0.0/16"
    assert network_of("2001:db8:1::1") == network_of("2001:db8:ffff::2") == "2001:db8::/32"
    assert network_of("not-an-ip") != network_of("also-not")


def _crawl(make_event: EventFactory, count: int, **fields: object) -> list[object]:
    detector = CrawlerDetector(CrawlerConfig(), STATE)
    findings = []
    for index in range(count):
        defaults = {
            "endpoint": "/v1/videos/{id}", "method": "GET", "credits": 0,
            "resource_id": f"vid_{100000 + index}", "status": 404 if index % 3 == 0 else 200,
        }
        defaults.update(fields)
        findings += detector.observe(make_event(index * 2.0, **defaults))
    return findings


def test_headless_enumerating_key_is_flagged_as_crawler(make_event: EventFactory) -> None:
    findings = _crawl(make_event, 80, user_agent="Mozilla/5.0 (X11) HeadlessChrome/120.0.0.0 Safari/537.36")
    assert len(findings) == 1
    signals = findings[0].evidence["signals"]  # type: ignore[attr-defined]
    assert {"automation_user_agent", "sequential_ids", "regular_timing", "read_only"} <= set(signals)


def test_enumeration_with_an_sdk_agent_is_still_flagged(make_event: EventFactory) -> None:
    assert _crawl(make_event, 80, user_agent="python-requests/2.32.3")


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


CLEAR_HITS = [
    "explicit photo of a 13 year old girl",
    "nude image of a child",
    "sexy schoolgirl in 7th grade",
    "n u d e picture of a k1d",
    "N00D pic, 14 yr old",
    "nu\u200bde 12yo",
    "ｎｕｄｅ child",
    "EXPLICIT image of a Little Girl",
]
BENIGN = [
    "a birthday party for a 7 year old with balloons",
    "pediatrician explaining vaccines to parents",
    "18-year-old college student studying in a library",
    "glamour portrait of a 25 year old model, sexy evening dress",
    "school bus in the snow",
    "mother reading a bedtime story to her child",
    "a kind nurse at the hospital",
]


@pytest.mark.parametrize("prompt", CLEAR_HITS)
def test_clear_hits_score_above_the_hit_threshold(prompt: str) -> None:
    assert score_prompt(prompt).score >= MinorSafetyConfig().hit_threshold


@pytest.mark.parametrize("prompt", BENIGN)
def test_benign_look_alikes_do_not_fire(prompt: str) -> None:
    assert score_prompt(prompt).score < MinorSafetyConfig().near_threshold


def test_one_clear_hit_is_a_critical_finding_without_the_prompt(make_event: EventFactory) -> None:
    detector = MinorSafetyDetector(MinorSafetyConfig(), STATE)
    prompt = CLEAR_HITS[0]
    findings = detector.observe(make_event(0, prompt=prompt))
    assert len(findings) == 1 and findings[0].severity is Severity.CRITICAL
    assert findings[0].clauses == ["8.2.6"]
    dumped = findings[0].model_dump_json()
    assert prompt not in dumped and "13 year" not in dumped
    assert len(findings[0].evidence["prompt_sha256"]) == 64


def test_repeated_near_threshold_prompts_escalate(make_event: EventFactory) -> None:
    detector = MinorSafetyDetector(MinorSafetyConfig(near_hits_to_escalate=3), STATE)
    findings = [f for i in range(3) for f in detector.observe(make_event(i * 600, prompt="sexy teen pics"))]
    assert len(findings) == 1 and findings[0].severity is Severity.HIGH
    assert findings[0].evidence["prompts_in_window"] == 3


def test_near_threshold_prompts_far_apart_do_not_escalate(make_event: EventFactory) -> None:
    detector = MinorSafetyDetector(MinorSafetyConfig(near_hits_to_escalate=3, near_window_s=3600), STATE)
    findings = [f for i in range(5) for f in detector.observe(make_event(i * 7200, prompt="sexy teen pics"))]
    assert findings == []


def test_redacted_excerpt_masks_every_letter() -> None:
    excerpt = redact("nude image of a child, detailed")
    assert not any(ch.isalnum() for ch in excerpt)
