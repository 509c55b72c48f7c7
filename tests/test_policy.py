"""The minimal enforcement step: severity → measure, deterministic ids, dedupe, supersede, shadow."""

from __future__ import annotations

from datetime import timedelta

from enforcement.policy import EnforcementPolicy
from models.action import ActionKind, ActionMode, ActionScope
from models.config import WardenConfig
from models.finding import Finding, Severity, SubjectType
from tests.conftest import BASE_TIME


def finding(detector: str = "traffic_anomaly", severity: Severity = Severity.MEDIUM, minutes: float = 0,
            fid: str = "f-1", api_key_id: str | None = "key-1") -> Finding:
    ts = BASE_TIME + timedelta(minutes=minutes)
    return Finding(
        finding_id=fid, ts=ts, detector=detector, subject_type=SubjectType.ACCOUNT, subject_id="acct-1",
        account_id="acct-1", api_key_id=api_key_id, score=0.9, severity=severity, clauses=["7.1"],
        summary="s", evidence={}, window_start=ts, window_end=ts, model_version="v",
    )


def test_severity_maps_to_measure_with_expiry_and_clause_4_2() -> None:
    action = EnforcementPolicy(WardenConfig()).decide(finding(severity=Severity.HIGH))
    assert action is not None
    assert action.action is ActionKind.SUSPEND and action.duration_s == 86_400
    assert action.expires_at == action.ts + timedelta(days=1)
    assert "4.2" in action.reasons[0].clauses and action.mode is ActionMode.ENFORCE


def test_low_severity_gives_no_action() -> None:
    assert EnforcementPolicy(WardenConfig()).decide(finding(severity=Severity.LOW)) is None


def test_action_ids_are_deterministic() -> None:
    first = EnforcementPolicy(WardenConfig()).decide(finding())
    second = EnforcementPolicy(WardenConfig()).decide(finding())
    assert first is not None and second is not None and first.action_id == second.action_id
    other = EnforcementPolicy(WardenConfig()).decide(finding(fid="f-2"))
    assert other is not None and other.action_id != first.action_id


def test_equal_active_action_is_not_repeated_and_stronger_supersedes() -> None:
    policy = EnforcementPolicy(WardenConfig())
    first = policy.decide(finding(minutes=0))
    assert first is not None
    assert policy.decide(finding(minutes=10, fid="f-2")) is None
    stronger = policy.decide(finding(minutes=20, fid="f-3", severity=Severity.HIGH))
    assert stronger is not None and stronger.supersedes == first.action_id
    after_expiry = policy.decide(finding(minutes=24 * 60 + 30, fid="f-4"))
    assert after_expiry is not None and after_expiry.supersedes is None


def test_key_scoped_detectors_target_the_key() -> None:
    action = EnforcementPolicy(WardenConfig()).decide(finding(detector="key_sharing"))
    assert action is not None and action.scope is ActionScope.API_KEY and action.api_key_id == "key-1"


def test_shadow_detector_actions_are_marked_shadow() -> None:
    config = WardenConfig.model_validate({"detectors": {"crawler": {"shadow": True}}})
    action = EnforcementPolicy(config).decide(finding(detector="crawler"))
    assert action is not None and action.mode is ActionMode.SHADOW


def test_critical_findings_require_review() -> None:
    action = EnforcementPolicy(WardenConfig()).decide(finding(detector="minor_safety", severity=Severity.CRITICAL))
    assert action is not None and action.requires_review
