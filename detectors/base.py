"""The Detector protocol: ``observe(event) -> findings`` over explicit, bounded, event-time state."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from detectors.state import S, StateOwner, SubjectStore
from models.config import DetectorConfig, StateConfig
from models.finding import Finding, Severity, SubjectType, stable_id
from models.telemetry import TelemetryEvent
from models.timestamps import from_epoch_ms


class Detector(StateOwner):
    """One detector family. Knows nothing of Kafka: the same code runs in replay and in run.

    Subclasses declare ``name``, ``model_version`` and ``clauses`` and implement ``observe``.
    State must live in ``SubjectStore``s returned by ``stores()`` so that it can be
    snapshotted, restored, expired and written to the changelog uniformly.
    """

    name: ClassVar[str]
    model_version: ClassVar[str]
    clauses: ClassVar[tuple[str, ...]]

    @abstractmethod
    def observe(self, event: TelemetryEvent) -> list[Finding]:
        """Update state with one event and return the findings it completes (usually none)."""

    def prepare(self, events: list[TelemetryEvent]) -> None:
        """Called once per batch before ``observe``: a detector with a vectorised model scores the
        whole batch here, so ``observe`` stays per event and the output order never depends on batching."""

    def finding(
        self,
        event: TelemetryEvent,
        *,
        subject_type: SubjectType,
        subject_id: str,
        window_start_ms: int,
        score: float,
        severity: Severity,
        summary: str,
        evidence: dict[str, Any],
        api_key_id: str | None = None,
    ) -> Finding:
        """Build a finding with a deterministic id from what it is about and when."""
        return Finding(
            finding_id=stable_id("fnd", self.name, subject_type.value, subject_id, window_start_ms, event.event_id),
            ts=event.ts,
            detector=self.name,
            subject_type=subject_type,
            subject_id=subject_id,
            account_id=event.account_id,
            api_key_id=api_key_id if api_key_id is not None else event.api_key_id,
            score=round(min(1.0, max(0.0, score)), 4),
            severity=severity,
            clauses=list(self.clauses),
            summary=summary,
            evidence=evidence,
            window_start=from_epoch_ms(window_start_ms),
            window_end=event.ts,
            model_version=self.model_version,
        )


def new_store(
    factory: Callable[[int], S], loader: Callable[[dict[str, Any]], S], state: StateConfig
) -> SubjectStore[S]:
    return SubjectStore(factory, loader, state.max_subjects, state.idle_ttl_s * 1000)


def cooling_down(last_flag_ms: int | None, now_ms: int, cooldown_s: int) -> bool:
    """A subject that was flagged stays quiet for ``cooldown_s`` of event time."""
    return last_flag_ms is not None and now_ms - last_flag_ms < cooldown_s * 1000


DetectorFactory = Callable[[DetectorConfig, StateConfig], Detector]
