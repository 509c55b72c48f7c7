"""The enforcement policy: findings in, the measures of clause 4.2 (restrict, suspend, terminate) out.

Per detector a declarative ladder (``enforcement.ladders``) names the measures; repeat offences
within its look-back climb it. A subject with an equal or stronger action in force gets no new one;
a stronger one supersedes it. Shadow and enforce are tracked apart, so a shadowed detector's
ladder never touches what is enforced. Zero-tolerance severities enforce at once, whatever the
shadow setting or the allowlist. A manual reversal (an allowlist entry, or a lifted action fed
back) marks the evidence so far as reviewed: only findings resting on newer evidence act again.

Everything remembered lives in two bounded SubjectStores, so it goes into the Kafka changelog and
moves with its partition like detector state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from detectors.state import StateOwner, SubjectStore
from enforcement.allowlist import Allowlist
from models.action import ActionKind, ActionMode, ActionReason, ActionReversal, ActionScope, EnforcementAction
from models.config import Ladder, WardenConfig
from models.finding import Finding, stable_id
from models.telemetry import TelemetryEvent
from models.timestamps import to_epoch_ms

TERMS_MEASURES_CLAUSE = "4.2"


@dataclass(slots=True)
class ActiveAction:
    """The action in force on one subject (per mode); strength 0 means none."""

    last_seen_ms: int
    action_id: str = ""
    strength: int = 0
    expires_ms: int | None = None

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> ActiveAction:
        return cls(**data)

    def in_force(self, now_ms: int) -> bool:
        return self.strength > 0 and (self.expires_ms is None or now_ms < self.expires_ms)


@dataclass(slots=True)
class LadderHistory:
    """One account's past on one detector's ladder (per mode): when it offended, what was reviewed."""

    last_seen_ms: int
    offences_ms: list[int] = field(default_factory=list)
    reviewed_until_ms: int | None = None
    # Zero tolerance must never miss a new prompt that arrives late in event time: for it, only the evidence
    # of a lifted action itself counts as reviewed, not everything up to the (wall-clock) lift.
    lifted_evidence_until_ms: int | None = None

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> LadderHistory:
        return cls(**data)

    def reviewed(self, finding: Finding, zero_tolerance: bool) -> bool:
        """Whether the finding rests on evidence a reviewer has already cleared."""
        until_ms = self.lifted_evidence_until_ms if zero_tolerance else self.reviewed_until_ms
        return until_ms is not None and to_epoch_ms(finding.window_start) <= until_ms

    def mark_reviewed(self, until_ms: int) -> None:
        self.reviewed_until_ms = until_ms if self.reviewed_until_ms is None else max(self.reviewed_until_ms, until_ms)
        self.last_seen_ms = max(self.last_seen_ms, until_ms)


def _active_key(mode: ActionMode, scope: ActionScope, subject: str) -> str:
    return f"{mode.value}|{scope.value}|{subject}"


def _history_key(mode: ActionMode, detector: str, account_id: str) -> str:
    return f"{mode.value}|{detector}|{account_id}"


def key_figures(evidence: dict[str, Any]) -> dict[str, float | int | bool]:
    """The numbers of a finding's evidence: never ids, hashes, networks or text."""
    return {name: value for name, value in sorted(evidence.items()) if isinstance(value, int | float | bool)}


class EnforcementPolicy(StateOwner):
    """Turns findings into actions. State (what is in force, each ladder's history) is bounded and snapshot-able."""

    def __init__(self, config: WardenConfig) -> None:
        self.config = config
        enforcement = config.enforcement
        self._shadow = {name: section.shadow for name, section in config.detectors.by_name().items()}
        self.allowlist = Allowlist(enforcement.allowlist)
        longest_action_s = max(
            (step.duration_s or 0 for ladder in enforcement.ladders.values() for step in ladder.steps), default=0
        )
        longest_lookback_s = max((ladder.lookback_s for ladder in enforcement.ladders.values()), default=0)
        idle_ttl_s = config.state.idle_ttl_s
        # An action is remembered at least as long as it can be in force, an offence as long as it can escalate.
        self.active: SubjectStore[ActiveAction] = SubjectStore(
            ActiveAction, ActiveAction.load, config.state.max_subjects, max(idle_ttl_s, longest_action_s) * 1000
        )
        self.history: SubjectStore[LadderHistory] = SubjectStore(
            LadderHistory, LadderHistory.load, config.state.max_subjects, max(idle_ttl_s, longest_lookback_s) * 1000
        )

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"active": self.active, "history": self.history}

    def decide(self, finding: Finding, event: TelemetryEvent | None = None) -> EnforcementAction | None:
        """The action for one finding, or None. ``event`` is the event that completed the finding,
        which network and user-agent allowlist entries are matched against."""
        ladder = self.config.enforcement.ladders.get(finding.detector)
        if ladder is None or ladder.start_at[finding.severity] is None:
            return None
        zero_tolerance = finding.severity in ladder.zero_tolerance
        shadowed = self._shadow.get(finding.detector, False) and not zero_tolerance
        mode = ActionMode.SHADOW if shadowed else ActionMode.ENFORCE
        now_ms = to_epoch_ms(finding.ts)
        history = self.history.touch(_history_key(mode, finding.detector, finding.account_id), now_ms)
        history.last_seen_ms = max(history.last_seen_ms, now_ms)
        if history.reviewed(finding, zero_tolerance):
            return None
        if not zero_tolerance and self.allowlist.match(finding, event) is not None:
            # The entry is the reviewer's verdict on this evidence: it stays cleared once the entry lapses.
            history.mark_reviewed(to_epoch_ms(finding.window_end))
            return None
        horizon_ms = now_ms - ladder.lookback_s * 1000
        history.offences_ms = [t for t in history.offences_ms if t > horizon_ms][-len(ladder.steps) :]
        step_index = ladder.step_for(finding.severity, len(history.offences_ms))
        assert step_index is not None  # start_at was checked above
        step = ladder.steps[step_index]
        key_scoped = step.scope is ActionScope.API_KEY and finding.api_key_id is not None
        scope = ActionScope.API_KEY if key_scoped else ActionScope.ACCOUNT
        subject = finding.api_key_id if key_scoped and finding.api_key_id else finding.account_id
        strength = step.action.strength
        if self._covered(mode, finding.account_id, strength, now_ms) or (
            key_scoped and self._covered(mode, subject, strength, now_ms, ActionScope.API_KEY)
        ):
            return None
        active = self.active.touch(_active_key(mode, scope, subject), now_ms)
        supersedes = active.action_id if active.in_force(now_ms) else None
        action_id = stable_id(
            "act", self.config.policy_version, mode.value, scope.value, subject, step.action.value, finding.finding_id
        )
        history.offences_ms.append(now_ms)
        active.last_seen_ms = now_ms
        active.action_id = action_id
        active.strength = strength
        active.expires_ms = None if step.duration_s is None else now_ms + step.duration_s * 1000
        return EnforcementAction(
            action_id=action_id,
            ts=finding.ts,
            account_id=finding.account_id,
            api_key_id=finding.api_key_id if key_scoped else None,
            scope=scope,
            action=step.action,
            duration_s=step.duration_s,
            expires_at=None if step.duration_s is None else finding.ts + timedelta(seconds=step.duration_s),
            reasons=[self._reason(finding, ladder, step_index, zero_tolerance)],
            severity=finding.severity,
            mode=mode,
            requires_review=(
                zero_tolerance or ladder.requires_review or step.requires_review or step.action is ActionKind.TERMINATE
            ),
            preserve_evidence=(
                zero_tolerance or ladder.preserve_evidence or finding.evidence.get("preserve_evidence") is True
            ),
            supersedes=supersedes,
            policy_version=self.config.policy_version,
        )

    def _covered(
        self, mode: ActionMode, subject: str, strength: int, now_ms: int, scope: ActionScope = ActionScope.ACCOUNT
    ) -> bool:
        """An equal or stronger action in force on the subject (an account's covers its keys too)."""
        key = _active_key(mode, scope, subject)
        if key not in self.active:
            return False
        active = self.active.touch(key, now_ms)
        return active.in_force(now_ms) and active.strength >= strength

    def _reason(self, finding: Finding, ladder: Ladder, step_index: int, zero_tolerance: bool) -> ActionReason:
        start = ladder.start_at[finding.severity]
        climbed = step_index + 1 - (start or 1)
        rule = f"{finding.detector} ladder step {step_index + 1} of {len(ladder.steps)}: {finding.severity.value}"
        if climbed:
            rule += f", {climbed} earlier offence{'s' if climbed > 1 else ''} within {ladder.lookback_s}s"
        if zero_tolerance:
            rule += ", zero tolerance"
        return ActionReason(
            finding_id=finding.finding_id,
            detector=finding.detector,
            clauses=[*finding.clauses, TERMS_MEASURES_CLAUSE],
            summary=finding.summary,
            score=finding.score,
            rule=rule,
            figures=key_figures(finding.evidence),
        )

    def apply_reversal(self, reversal: ActionReversal) -> None:
        """A reviewer lifted an action: it is no longer in force, it no longer counts as an offence, and the
        evidence it rested on (up to the lift) triggers nothing again. Idempotent, so a reversal may be
        applied again after a restore."""
        lifted = reversal.action
        action_ms = to_epoch_ms(lifted.ts)
        reviewed_until_ms = max(action_ms, to_epoch_ms(reversal.lifted_at))
        key = _active_key(lifted.mode, lifted.scope, lifted.subject_id)
        if key in self.active:
            active = self.active.touch(key, reviewed_until_ms)
            if active.action_id == lifted.action_id:
                active.strength, active.action_id, active.expires_ms = 0, "", None
        for detector in sorted({reason.detector for reason in lifted.reasons}):
            history = self.history.touch(_history_key(lifted.mode, detector, lifted.account_id), reviewed_until_ms)
            history.mark_reviewed(reviewed_until_ms)
            history.lifted_evidence_until_ms = max(history.lifted_evidence_until_ms or action_ms, action_ms)
            history.offences_ms = [t for t in history.offences_ms if t != action_ms]
