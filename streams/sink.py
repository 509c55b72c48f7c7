"""The Sink interface: ``add`` output records inside a batch, ``commit`` them with the source positions."""

from __future__ import annotations

from abc import ABC, abstractmethod

from streams.records import Channel, OutputRecord
from streams.source import Source


class Sink(ABC):
    """Where findings, actions, dead letters and state changes go.

    A batch is ``begin`` → ``add``… → ``commit``. The default commit flushes the outputs and then
    commits the source positions (at-least-once); a transactional backend overrides ``begin``,
    ``commit`` and ``abort`` to put both in one transaction (exactly-once).
    """

    @abstractmethod
    def channels(self) -> frozenset[Channel]:
        """The channels this sink keeps; the runner builds no records for the others."""

    def begin(self) -> None:  # noqa: B027 - only transactional sinks open anything
        """Start a batch."""

    @abstractmethod
    def add(self, record: OutputRecord) -> None:
        """Queue one record; it is durable only after ``commit``."""

    @abstractmethod
    def flush(self) -> None:
        """Make every added record durable."""

    def commit(self, source: Source, positions: dict[int, int]) -> None:
        """The commit point: outputs first, then the positions, so a crash repeats rather than loses."""
        self.flush()
        if positions:
            source.commit(positions)

    def abort(self) -> None:  # noqa: B027 - only transactional sinks can take records back
        """Give up the open batch."""

    def close(self) -> None:
        self.flush()
