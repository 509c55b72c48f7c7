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

    def observe_batch(self, events: list[TelemetryEvent]) -> list[tuple[int, Finding]]:
        """``observe`` each event in turn: the findings, each with the index of the event that completed it.

        Detectors keep no state in common, so the pipeline may run each over the whole batch in turn and
        still hand the policy the findings in the order a per-event loop would (by event, then detector).
        A detector with a vectorised model scores the whole batch at once here; its findings must be those
        of ``observe`` on each event, so that the output never depends on batching."""
        return [(index, finding) for index, event in enumerate(events) for finding in self.observe(event)]

    def prepare(self, events: list[TelemetryEvent]) -> None:
        """Work that depends on each event alone and that this detector shares with its peers of the other
        partitions, done once for a chunk of every partition's events before each partition's detector observes
        its own: a prompt's score, so that the model is called once a chunk rather than once a partition. The
        pipeline calls it on one partition's detectors. It changes how soon ``observe_batch`` has an answer, never
        the answer."""

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


class SteppedDetector(Detector):
    """A detector whose compiled window steps over a batch, coming back to Python only at the events its rules
    must judge (few): the per-event path makes no Python call."""

    @abstractmethod
    def step(self, events: list[TelemetryEvent], start: int) -> tuple[Any, ...] | None:
        """Count ``events[start:]`` in turn up to the first that the rules must judge: ``(index, *state)`` for
        it, with the state ``judge`` reads; None when the batch is counted."""

    @abstractmethod
    def judge(self, event: TelemetryEvent, *state: Any) -> list[Finding]:
        """The rules on an event ``step`` stopped at, which it has already counted."""

    def observe_batch(self, events: list[TelemetryEvent]) -> list[tuple[int, Finding]]:
        found: list[tuple[int, Finding]] = []
        start = 0
        while (stopped := self.step(events, start)) is not None:
            index, *state = stopped
            found.extend((index, finding) for finding in self.judge(events[index], *state))
            start = index + 1
        return found

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        return [finding for _, finding in self.observe_batch([event])]


def new_store(
    factory: Callable[[int], S], loader: Callable[[dict[str, Any]], S], state: StateConfig
) -> SubjectStore[S]:
    return SubjectStore(factory, loader, state.max_subjects, state.idle_ttl_s * 1000)


def cooling_down(last_flag_ms: int | None, now_ms: int, cooldown_s: int) -> bool:
    """A subject that was flagged stays quiet for ``cooldown_s`` of event time."""
    return last_flag_ms is not None and now_ms - last_flag_ms < cooldown_s * 1000


DetectorFactory = Callable[[DetectorConfig, StateConfig], Detector]
