"""Finding: what a detector reports, on ``warden.findings.v1``."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.timestamps import UtcTimestamp


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class SubjectType(StrEnum):
    ACCOUNT = "account"
    API_KEY = "api_key"
    IP = "ip"


class Finding(BaseModel):
    """One detector's judgement about one subject over one event-time window.

    ``evidence`` carries numbers and a few event ids, never raw prompt text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    finding_id: str
    ts: UtcTimestamp = Field(description="Event time of the event that completed the finding")
    detector: str = Field(description="traffic_anomaly | key_sharing | crawler | minor_safety | ...")
    subject_type: SubjectType
    subject_id: str
    account_id: str
    api_key_id: str | None = None
    score: float = Field(ge=0.0, le=1.0)
    severity: Severity
    clauses: list[str] = Field(min_length=1, description="Terms clauses the finding rests on")
    summary: str = Field(description="One human sentence")
    evidence: dict[str, Any] = Field(default_factory=dict)
    window_start: UtcTimestamp
    window_end: UtcTimestamp
    model_version: str


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic id: the same parts always give the same id, so consumers can dedupe."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:32]}"
