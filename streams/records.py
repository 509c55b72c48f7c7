"""The records that move between sources, the pipeline and sinks, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Channel(StrEnum):
    """Logical outputs; each backend maps them to files or topics."""

    FINDINGS = "findings"
    ACTIONS = "actions"
    DEAD_LETTERS = "dead_letters"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One input record and its position: (partition, offset) for Kafka, (0, line number) for files."""

    value: bytes
    partition: int
    offset: int
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    channel: Channel
    key: bytes | None
    value: bytes | None  # None is a tombstone (state changelog deletes)
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    partition: int | None = None  # pinned partition (the changelog follows its input partition)
