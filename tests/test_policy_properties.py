"""Property: whatever findings and reversals arrive, one subject never has two conflicting actions in force."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from enforcement.policy import EnforcementPolicy
from models.action import ActionReversal, ActionScope, EnforcementAction
from models.config import WardenConfig
from models.finding import Finding, Severity, SubjectType
from tests.conftest import BASE_TIME

DETECTORS = ["traffic_anomaly", "key_sharing", "crawler", "minor_safety"]


@dataclass(frozen=True)
class FindingStep:
    detector: str
    severity: Severity
    account: str
    key: str | None
    advance_min: int
    window_min: int


@dataclass(frozen=True)
class ReversalStep:
    pick: int
    advance_min: int


finding_steps = st.builds(
    FindingStep,
    detector=st.sampled_from(DETECTORS),
    severity=st.sampled_from(list(Severity)),
    account=st.sampled_from(["a1", "a2"]),
    key=st.sampled_from(["k1", "k2", None]),
    advance_min=st.integers(0, 600),
    window_min=st.integers(0, 180),
)
reversal_steps = st.builds(ReversalStep, pick=st.integers(0, 1000), advance_min=st.integers(0, 60))


def _finding(step: FindingStep, now: datetime, number: int) -> Finding:
    return Finding(
        finding_id=f"f-{number}", ts=now, detector=step.detector, subject_type=SubjectType.ACCOUNT,
        subject_id=step.account, account_id=step.account, api_key_id=step.key, score=0.9, severity=step.severity,
        clauses=["7.1"], summary="s", evidence={}, window_start=now - timedelta(minutes=step.window_min),
        window_end=now, model_version="v",
    )


def _live(action: EnforcementAction | None, now: datetime) -> EnforcementAction | None:
    return action if action is not None and action.active_at(now) else None


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.one_of(finding_steps, finding_steps, finding_steps, reversal_steps), max_size=60),
    shadowed=st.sets(st.sampled_from(DETECTORS)),
)
def test_replay_never_leaves_two_conflicting_active_actions(
    steps: list[FindingStep | ReversalStep], shadowed: set[str]
) -> None:
    config = WardenConfig.model_validate({"detectors": {name: {"shadow": True} for name in shadowed}})
    policy = EnforcementPolicy(config)
    now = BASE_TIME
    emitted: list[EnforcementAction] = []
    in_force: dict[tuple[str, str, str], EnforcementAction | None] = {}  # (mode, scope, subject) → its action
    for number, step in enumerate(steps):
        now += timedelta(minutes=step.advance_min)
        if isinstance(step, ReversalStep):
            if emitted:
                lifted = emitted[step.pick % len(emitted)]
                policy.apply_reversal(ActionReversal(action=lifted, lifted_at=now, author="a", reason="r"))
                slot = (lifted.mode.value, lifted.scope.value, lifted.subject_id)
                if in_force.get(slot) is lifted:
                    in_force[slot] = None
            continue
        action = policy.decide(_finding(step, now, number))
        if action is None:
            continue
        emitted.append(action)
        slot = (action.mode.value, action.scope.value, action.subject_id)
        current = _live(in_force.get(slot), now)
        if current is None:
            assert action.supersedes is None
        else:
            assert action.action.strength > current.action.strength, "an equal or weaker action was repeated"
            assert action.supersedes == current.action_id, "a stronger action must name the one it replaces"
        if action.scope is ActionScope.API_KEY:
            account = _live(in_force.get((action.mode.value, ActionScope.ACCOUNT.value, action.account_id)), now)
            assert account is None or account.action.strength < action.action.strength, "the account's covers it"
        in_force[slot] = action
