"""The enforcement policy, rule by rule, as small scripted sequences of findings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from enforcement.policy import EnforcementPolicy
from models.action import ActionKind, ActionMode, ActionReversal, ActionScope, EnforcementAction
from models.config import ConfigError, WardenConfig, parse_config
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent
from tests.conftest import BASE_TIME, EventFactory

HOUR = 60.0


def finding(
    detector: str = "traffic_anomaly",
    severity: Severity = Severity.MEDIUM,
    minutes: float = 0,
    fid: str | None = None,
    api_key_id: str | None = "key-1",
    account_id: str = "acct-1",
    window_minutes: float = 10,
    evidence: dict[str, Any] | None = None,
) -> Finding:
    ts = BASE_TIME + timedelta(minutes=minutes)
    return Finding(
        finding_id=fid or f"f-{detector}-{minutes}", ts=ts, detector=detector, subject_type=SubjectType.ACCOUNT,
        subject_id=account_id, account_id=account_id, api_key_id=api_key_id, score=0.9, severity=severity,
        clauses=["7.1"], summary="s", evidence=evidence or {}, window_start=ts - timedelta(minutes=window_minutes),
        window_end=ts, model_version="v",
    )


def decide(policy: EnforcementPolicy, *args: Any, event: TelemetryEvent | None = None, **kw: Any) -> EnforcementAction:
    action = policy.decide(finding(*args, **kw), event)
    assert action is not None
    return action


def config(**enforcement: Any) -> WardenConfig:
    return WardenConfig.model_validate({"enforcement": enforcement})


# 1. The ladder

def test_crawler_ladder_restrict_then_suspend_then_terminate_after_review() -> None:
    policy = EnforcementPolicy(WardenConfig())
    first = decide(policy, "crawler", minutes=0)
    assert (first.action, first.scope, first.api_key_id, first.duration_s) == (
        ActionKind.RESTRICT, ActionScope.API_KEY, "key-1", 3600)
    assert first.expires_at == first.ts + timedelta(hours=1) and not first.requires_review
    second = decide(policy, "crawler", minutes=2 * HOUR)  # the restriction lapsed; a repeat offence climbs
    assert (second.action, second.scope, second.duration_s) == (ActionKind.SUSPEND, ActionScope.API_KEY, 86_400)
    assert second.supersedes is None
    third = decide(policy, "crawler", minutes=27 * HOUR)
    assert (third.action, third.scope) == (ActionKind.TERMINATE, ActionScope.ACCOUNT)
    assert third.duration_s is None and third.expires_at is None and third.requires_review


def test_key_sharing_ladder_restricts_then_suspends_the_key_then_the_account() -> None:
    policy = EnforcementPolicy(WardenConfig())
    day = 24 * HOUR
    steps = [decide(policy, "key_sharing", minutes=m) for m in (0, 2 * day, 10 * day)]
    assert [(a.action, a.scope, a.api_key_id) for a in steps] == [
        (ActionKind.RESTRICT, ActionScope.API_KEY, "key-1"),
        (ActionKind.SUSPEND, ActionScope.API_KEY, "key-1"),
        (ActionKind.SUSPEND, ActionScope.ACCOUNT, None),
    ]
    assert steps[2].requires_review


def test_traffic_restricts_for_longer_each_time_and_forgets_after_the_lookback() -> None:
    policy = EnforcementPolicy(WardenConfig())
    durations = [decide(policy, minutes=m).duration_s for m in (0, 2 * HOUR, 10 * HOUR)]
    assert durations == [3600, 21_600, 86_400]
    assert decide(policy, minutes=10 * HOUR + 31 * 24 * HOUR).duration_s == 3600


def test_severity_picks_the_first_step_and_low_gives_nothing() -> None:
    policy = EnforcementPolicy(WardenConfig())
    assert policy.decide(finding("crawler", Severity.LOW)) is None
    assert decide(policy, "crawler", Severity.HIGH).action is ActionKind.SUSPEND


def test_a_detector_without_a_ladder_only_reports() -> None:
    ladders = WardenConfig().enforcement.model_dump()["ladders"]
    del ladders["traffic_anomaly"]
    assert EnforcementPolicy(config(ladders=ladders)).decide(finding()) is None


# 2. Dedupe, supersede, deterministic ids

def test_equal_active_action_is_not_repeated_and_does_not_escalate() -> None:
    policy = EnforcementPolicy(WardenConfig())
    assert decide(policy, "crawler", Severity.HIGH, minutes=0).action is ActionKind.SUSPEND
    # Medium after one offence is suspend again: already in force, so nothing, and no further offence counted.
    assert policy.decide(finding("crawler", minutes=10)) is None
    assert policy.decide(finding("crawler", minutes=20)) is None


def test_a_stronger_action_supersedes_the_one_in_force() -> None:
    policy = EnforcementPolicy(WardenConfig())
    restrict = decide(policy, "crawler", minutes=0)
    suspend = decide(policy, "crawler", minutes=10)  # still crawling under the restriction: climbs
    assert suspend.supersedes == restrict.action_id and suspend.action is ActionKind.SUSPEND
    terminate = decide(policy, "crawler", minutes=20)  # the account, a different subject from the key
    assert terminate.action is ActionKind.TERMINATE and terminate.supersedes is None


def test_an_account_wide_action_covers_its_keys() -> None:
    policy = EnforcementPolicy(WardenConfig())
    decide(policy, "traffic_anomaly", Severity.HIGH)  # restrict the account for 6 h
    assert policy.decide(finding("crawler", minutes=5)) is None  # restrict the key: already covered
    assert decide(policy, "crawler", Severity.HIGH, minutes=6).action is ActionKind.SUSPEND


def test_action_ids_are_deterministic() -> None:
    first = decide(EnforcementPolicy(WardenConfig()), fid="f-1")
    assert decide(EnforcementPolicy(WardenConfig()), fid="f-1").action_id == first.action_id
    assert decide(EnforcementPolicy(WardenConfig()), fid="f-2").action_id != first.action_id


# 3. Shadow mode

def test_shadow_detector_actions_are_shadow_and_tracked_apart_from_enforced_ones() -> None:
    shadowed = WardenConfig.model_validate({"detectors": {"traffic_anomaly": {"shadow": True}}})
    policy = EnforcementPolicy(shadowed)
    shadow = decide(policy, "traffic_anomaly", Severity.HIGH)
    assert shadow.mode is ActionMode.SHADOW
    enforced = decide(policy, "crawler", minutes=1)  # a shadow restriction of the account covers nothing real
    assert enforced.mode is ActionMode.ENFORCE and enforced.supersedes is None


# 4. Allowlists and reversals

def entry(kind: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "value": value, "author": "jdoe", "reason": "verified partner", **extra}


@pytest.mark.parametrize(
    ("allow", "fields", "allowed"),
    [
        (entry("account", "acct-1"), {}, True),
        (entry("account", "acct-2"), {}, False),
        (entry("api_key", "key-1"), {}, True),
        (entry("cidr", "203.0.113.0/24"), {"ip": "203.0.113.9"}, True),
        (entry("cidr", "203.0.113.0/24"), {"ip": "198.51.100.9"}, False),
        (entry("cidr", "2001:db8::/32"), {"ip": "2001:db8::1"}, True),
        (entry("user_agent", r"^partnerbot/\d"), {"user_agent": "PartnerBot/2.1"}, True),
        (entry("user_agent", r"^partnerbot/\d"), {"user_agent": "curl/8"}, False),
        (entry("account", "acct-1", expires_at="2026-01-01T00:00:00Z"), {}, False),
    ],
)
def test_allowlist_entries(allow: dict[str, Any], fields: dict[str, Any], allowed: bool,
                           make_event: EventFactory) -> None:
    policy = EnforcementPolicy(config(allowlist=[allow]))
    action = policy.decide(finding("crawler"), make_event(**fields))
    assert (action is None) is allowed


def test_allowlist_never_stops_zero_tolerance() -> None:
    policy = EnforcementPolicy(config(allowlist=[entry("account", "acct-1")]))
    assert decide(policy, "minor_safety", Severity.CRITICAL).action is ActionKind.SUSPEND


def test_a_lapsed_allowlist_entry_does_not_let_the_same_evidence_trigger() -> None:
    lapses = (BASE_TIME + timedelta(hours=2)).isoformat()
    policy = EnforcementPolicy(config(allowlist=[entry("api_key", "key-1", expires_at=lapses)]))
    assert policy.decide(finding("key_sharing", minutes=60, window_minutes=60)) is None
    # After the entry lapses, a finding whose window still reaches back into what was allowlisted is the same evidence.
    assert policy.decide(finding("key_sharing", minutes=150, window_minutes=100)) is None
    assert decide(policy, "key_sharing", minutes=200, window_minutes=60).action is ActionKind.RESTRICT


def reversal(action: EnforcementAction, minutes: float) -> ActionReversal:
    return ActionReversal(action=action, lifted_at=BASE_TIME + timedelta(minutes=minutes), author="jdoe",
                          reason="false positive: a partner's load test")


def test_a_lifted_action_sticks_until_new_evidence_arrives() -> None:
    policy = EnforcementPolicy(WardenConfig())
    action = decide(policy, "crawler", minutes=0)
    lifted = reversal(action, minutes=30)
    for _ in range(2):  # idempotent: a restore may apply a reversal again
        policy.apply_reversal(lifted)
    assert policy.decide(finding("crawler", minutes=40, window_minutes=15)) is None  # window reaches before the lift
    again = decide(policy, "crawler", minutes=60, window_minutes=15)
    # New evidence acts again, from the first step: the lifted action is not an offence, nor superseded.
    assert again.action is ActionKind.RESTRICT and again.supersedes is None


def test_a_reversal_read_before_the_replay_prevents_the_action() -> None:
    original = decide(EnforcementPolicy(WardenConfig()), "crawler", minutes=0)
    policy = EnforcementPolicy(WardenConfig())
    policy.apply_reversal(reversal(original, minutes=5))
    assert policy.decide(finding("crawler", minutes=0)) is None


def test_a_lifted_zero_tolerance_action_never_hides_a_new_prompt_that_arrives_late() -> None:
    policy = EnforcementPolicy(WardenConfig())
    action = decide(policy, "minor_safety", Severity.CRITICAL, minutes=0, window_minutes=0)
    policy.apply_reversal(reversal(action, minutes=60))
    assert policy.decide(finding("minor_safety", Severity.CRITICAL, minutes=0, window_minutes=0)) is None
    late = decide(policy, "minor_safety", Severity.CRITICAL, minutes=30, window_minutes=0)  # before the lift
    assert late.action is ActionKind.SUSPEND and late.requires_review


# 5. Review and readable reasons; the zero-tolerance path

def test_zero_tolerance_enforces_at_once_even_in_shadow_and_preserves_evidence() -> None:
    all_shadow = {name: {"shadow": True} for name in WardenConfig().detectors.by_name()}
    policy = EnforcementPolicy(WardenConfig.model_validate({"detectors": all_shadow}))
    action = decide(policy, "minor_safety", Severity.CRITICAL, api_key_id=None)
    assert (action.action, action.scope, action.mode) == (ActionKind.SUSPEND, ActionScope.ACCOUNT, ActionMode.ENFORCE)
    assert action.requires_review and action.preserve_evidence
    assert "zero tolerance" in action.reasons[0].rule
    near = decide(EnforcementPolicy(WardenConfig.model_validate({"detectors": all_shadow})), "minor_safety",
                  Severity.HIGH)
    assert near.mode is ActionMode.SHADOW and near.requires_review  # repeated near-misses: reviewed, not zero tolerance


def test_every_terminate_and_every_minor_safety_action_requires_review() -> None:
    policy = EnforcementPolicy(WardenConfig())
    actions = [decide(policy, "crawler", Severity.HIGH, minutes=m) for m in (0, 30 * HOUR)]
    assert actions[-1].action is ActionKind.TERMINATE and actions[-1].requires_review
    assert decide(policy, "minor_safety", Severity.HIGH, account_id="acct-9").requires_review


def test_reasons_name_detector_clauses_rule_and_numbers_only() -> None:
    evidence = {"distinct_networks": 9, "ratio": 2.5, "networks": ["10.1"], "event_ids": ["e1"], "prompt_sha256": "ab"}
    policy = EnforcementPolicy(WardenConfig())
    decide(policy, "key_sharing", minutes=0)
    reason = decide(policy, "key_sharing", minutes=48 * HOUR, evidence=evidence).reasons[0]
    assert reason.detector == "key_sharing" and reason.clauses == ["7.1", "4.2"] and reason.summary == "s"
    assert reason.rule == "key_sharing ladder step 2 of 3: medium, 1 earlier offence within 2592000s"
    assert reason.figures == {"distinct_networks": 9, "ratio": 2.5}


# Validation of the enforcement config

@pytest.mark.parametrize(
    ("ladder_change", "field", "reason"),
    [
        ({"start_at": {"low": None, "medium": 4, "high": 1, "critical": 1}}, "ladders.crawler", "numbered 1..3"),
        ({"start_at": {"medium": 1}}, "ladders.crawler", "start_at lacks low"),
        ({"steps": [{"action": "suspend", "duration_s": 60}, {"action": "restrict", "duration_s": 60}],
          "start_at": {"low": None, "medium": 1, "high": 1, "critical": 2}}, "ladders.crawler", "weaker"),
        ({"zero_tolerance": ["critical"]}, "ladders.crawler", "needs requires_review"),
        ({"steps": [{"action": "terminate", "duration_s": 60}]}, "ladders.crawler.steps.0", "permanent"),
    ],
)
def test_bad_ladders_are_refused_naming_the_field(ladder_change: dict[str, Any], field: str, reason: str) -> None:
    ladders = WardenConfig().enforcement.model_dump(mode="json")["ladders"]
    ladders["crawler"].update(ladder_change)
    with pytest.raises(ConfigError) as info:
        parse_config({"enforcement": {"ladders": ladders}}, "test.yaml")
    assert f"enforcement.{field}" in str(info.value) and reason in str(info.value)


@pytest.mark.parametrize(
    ("allow", "reason"),
    [
        (entry("cidr", "203.0.113.7/24"), "not a network"),
        (entry("user_agent", "partner(bot"), "not a regular expression"),
        ({"kind": "account", "value": "acct-1", "reason": "r"}, "author"),
        (entry("account", "acct-1", expires_at="soon"), "expires_at"),
    ],
)
def test_bad_allowlist_entries_are_refused(allow: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"enforcement": {"allowlist": [allow]}}, "test.yaml")
    assert "enforcement.allowlist.0" in str(info.value) and reason in str(info.value)


def test_ladders_for_unknown_detectors_are_refused() -> None:
    crawler_ladder = WardenConfig().enforcement.ladders["crawler"]
    with pytest.raises(ConfigError, match="unknown detectors"):
        parse_config({"enforcement": {"ladders": {"telepathy": crawler_ladder}}}, "test.yaml")
