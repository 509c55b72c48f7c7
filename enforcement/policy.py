"""The minimal enforcement policy: one measure per finding severity, deduped while an equal one is active.

Clause 4.2 allows three measures (restrict, suspend, terminate). The graduated ladder,
allowlists and review routing build on this shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from detectors.state import SubjectStore
from models.action import ActionKind, ActionMode, ActionReason, ActionScope, EnforcementAction
from models.config import WardenConfig
from models.finding import Finding, stable_id


@dataclass(slots=True)
class ActiveAction:
    """The strongest action in force on one subject, per mode."""

    last_seen_ms: int
    action_id: str = ""
    strength: int = 0
    expires_ms: int | None = None

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> ActiveAction:
        return cls(**data)

    def covers(self, strength: int, now_ms: int) -> bool:
        in_force = self.expires_ms is None or now_ms < self.expires_ms
        return in_force and self.strength >= strength


class EnforcementPolicy:
    """Turns findings into actions. State (what is in force) is a bounded, snapshot-able store."""

    def __init__(self, config: WardenConfig) -> None:
        self.config = config
        self._shadow = {name: section.shadow for name, section in config.detectors.by_name().items()}
        self.active: SubjectStore[ActiveAction] = SubjectStore(
            ActiveAction,
            ActiveAction.load,
            config.state.max_subjects,
            # An action must be remembered at least as long as it can be in force.
            max(config.state.idle_ttl_s, *self._longest_duration()) * 1000,
        )

    def _longest_duration(self) -> list[int]:
        return [step.duration_s or 0 for step in self.config.enforcement.severity_actions.values() if step]

    def decide(self, finding: Finding) -> EnforcementAction | None:
        enforcement = self.config.enforcement
        step = enforcement.severity_actions[finding.severity]
        if step is None:
            return None
        key_scoped = finding.detector in enforcement.key_scoped_detectors and finding.api_key_id is not None
        scope = ActionScope.API_KEY if key_scoped else ActionScope.ACCOUNT
        subject = finding.api_key_id if key_scoped else finding.account_id
        mode = ActionMode.SHADOW if self._shadow.get(finding.detector, False) else ActionMode.ENFORCE
        now_ms = int(finding.ts.timestamp() * 1000)
        state_key = f"{mode.value}:{scope.value}:{subject}"
        existed = state_key in self.active
        active = self.active.touch(state_key, now_ms)
        if existed and active.covers(step.action.strength, now_ms):
            return None
        supersedes = active.action_id if existed and active.covers(1, now_ms) else None
        action_id = stable_id(
            "act", self.config.policy_version, mode.value, scope.value, subject, step.action.value, finding.finding_id
        )
        expires_at = finding.ts + timedelta(seconds=step.duration_s) if step.duration_s else None
        active.last_seen_ms = now_ms
        active.action_id = action_id
        active.strength = step.action.strength
        active.expires_ms = None if expires_at is None else now_ms + (step.duration_s or 0) * 1000
        return EnforcementAction(
            action_id=action_id,
            ts=finding.ts,
            account_id=finding.account_id,
            api_key_id=finding.api_key_id if key_scoped else None,
            scope=scope,
            action=step.action,
            duration_s=step.duration_s,
            expires_at=expires_at,
            reasons=[
                ActionReason(
                    finding_id=finding.finding_id,
                    detector=finding.detector,
                    clauses=[*finding.clauses, "4.2"],
                    summary=finding.summary,
                    score=finding.score,
                )
            ],
            severity=finding.severity,
            mode=mode,
            requires_review=step.requires_review or step.action is ActionKind.TERMINATE,
            supersedes=supersedes,
            policy_version=self.config.policy_version,
        )
