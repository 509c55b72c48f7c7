"""The Sink interface: ``add`` output records inside a batch, ``commit`` them with the source positions."""

from __future__ import annotations

from abc import ABC, abstractmethod

from streams.records import Channel, OutputRecord
from streams.source import Source


class Sink(ABC):
    """Where findings, actions, dead letters and state changes go.

    A batch is ``begin`` (with the source positions it takes the source to) → ``add``… → ``commit``. The
    default commit flushes the outputs and then commits the source positions (at-least-once); a
    transactional backend overrides ``begin``, ``commit`` and ``abort`` to put both in one transaction
    (exactly-once). Its commit may complete in the background: a failure then surfaces in the next batch, which
    is given up with it, and ``flush`` waits for it.
    """

    _consuming: tuple[Source, dict[int, int]] | None = None

    @abstractmethod
    def channels(self) -> frozenset[Channel]:
        """The channels this sink keeps; the runner builds no records for the others."""

    def begin(self, source: Source, positions: dict[int, int]) -> None:
        """Start a batch that takes ``source`` to ``positions`` (per partition, the next offset to read; empty
        for a batch that consumes nothing)."""
        self._consuming = (source, positions)

    def advance(self) -> None:  # noqa: B027 - only a sink whose commits complete in the background has work here
        """Called between chunks of a batch's work: go on with the batch's own opening, if the last commit has
        completed meanwhile, without waiting for it."""

    @abstractmethod
    def add(self, record: OutputRecord) -> None:
        """Queue one record; it is durable only after ``commit``."""

    @abstractmethod
    def flush(self) -> None:
        """Make every added record durable."""

    def commit(self) -> None:
        """The commit point: outputs first, then the positions, so a crash repeats rather than loses."""
        self.flush()
        if self._consuming is not None:
            source, positions = self._consuming
            self._consuming = None
            if positions:
                source.commit(positions)

    def abort(self) -> None:  # noqa: B027 - only transactional sinks can take records back
        """Give up the open batch."""

    def close(self) -> None:
        self.flush()
