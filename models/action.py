"""EnforcementAction: what the policy decides, on ``enforcement.actions.v1`` (keyed by account_id)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models.finding import Severity
from models.timestamps import UtcTimestamp


class ActionKind(StrEnum):
    """The three measures of clause 4.2, weakest first."""

    RESTRICT = "restrict"
    SUSPEND = "suspend"
    TERMINATE = "terminate"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]


_STRENGTH = {ActionKind.RESTRICT: 1, ActionKind.SUSPEND: 2, ActionKind.TERMINATE: 3}


class ActionScope(StrEnum):
    ACCOUNT = "account"
    API_KEY = "api_key"


class ActionMode(StrEnum):
    ENFORCE = "enforce"
    SHADOW = "shadow"


class ActionReason(BaseModel):
    """Why an action was taken, in terms a reviewer can read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    finding_id: str
    detector: str
    clauses: list[str]
    summary: str
    score: float
    rule: str = Field(default="", description="The ladder rung that decided, e.g. 'crawler ladder step 2 of 3'")
    figures: dict[str, float | int | bool] = Field(
        default_factory=dict, description="The finding's key figures (numbers only: never ids or text)"
    )


class EnforcementAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: str = Field(description="Deterministic: the same input gives the same id")
    ts: UtcTimestamp
    account_id: str
    api_key_id: str | None = None
    scope: ActionScope
    action: ActionKind
    duration_s: int | None = Field(default=None, ge=1, description="Null for terminate")
    expires_at: UtcTimestamp | None = Field(default=None, description="Null for terminate")
    reasons: list[ActionReason] = Field(min_length=1)
    severity: Severity
    mode: ActionMode
    requires_review: bool
    preserve_evidence: bool = Field(
        default=False, description="Keep the findings' evidence (event ids, hashes) beyond normal retention"
    )
    supersedes: str | None = None
    policy_version: str

    @property
    def subject_id(self) -> str:
        return self.api_key_id if self.scope is ActionScope.API_KEY and self.api_key_id else self.account_id

    def active_at(self, when: datetime) -> bool:
        return self.expires_at is None or when < self.expires_at


class ActionReversal(BaseModel):
    """A lifted action fed back by a reviewer (``enforcement.reversals.v1`` or ``warden replay --reversals``).

    The evidence the action rested on counts as reviewed: it does not trigger again, new evidence does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: EnforcementAction = Field(description="The action as Warden emitted it")
    lifted_at: UtcTimestamp
    author: str = Field(min_length=1)
    reason: str = Field(min_length=1)
