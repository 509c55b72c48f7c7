"""Ground truth that the simulator writes beside its events, for evaluation."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from models.finding import SubjectType
from models.timestamps import UtcTimestamp


class ScenarioKind(StrEnum):
    TRAFFIC_SURGE = "traffic_surge"
    KEY_SHARING = "key_sharing"
    CRAWLER = "crawler"
    MINOR_SAFETY = "minor_safety"

    @property
    def detector(self) -> str:
        """The detector family expected to catch this scenario."""
        return _DETECTOR_OF[self]


_DETECTOR_OF = {
    ScenarioKind.TRAFFIC_SURGE: "traffic_anomaly",
    ScenarioKind.KEY_SHARING: "key_sharing",
    ScenarioKind.CRAWLER: "crawler",
    ScenarioKind.MINOR_SAFETY: "minor_safety",
}


class ScenarioTruth(BaseModel):
    """One injected abuse scenario: who did what, and when (event time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario_id: str
    scenario: ScenarioKind
    variant: str = "basic"
    subject_type: SubjectType
    subject_id: str
    account_id: str
    api_key_id: str | None = None
    start: UtcTimestamp
    end: UtcTimestamp
