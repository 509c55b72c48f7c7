"""The Source interface: batches of positioned records, and commit points."""

from __future__ import annotations

from abc import ABC, abstractmethod

from streams.records import SourceRecord


class Source(ABC):
    """Where telemetry comes from. The runner polls batches and commits after their outputs are safe.

    ``commit`` receives, per partition, the offset of the next record to read (Kafka's convention),
    so that a restart resumes exactly after the last committed batch.
    """

    name: str = "source"

    @abstractmethod
    def poll(self, max_records: int) -> list[SourceRecord]:
        """Up to ``max_records`` records; an empty list means none right now."""

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True when no record will ever come again (end of a file); a live stream never is."""

    def commit(self, positions: dict[int, int]) -> None:  # noqa: B027 - a file has nothing to commit
        """Record that everything before these positions is processed."""

    def progress(self) -> tuple[int, int | None]:
        """(units done, units in total or None), for a progress bar."""
        return 0, None

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what the source holds."""
