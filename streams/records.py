"""The records that move between sources, the pipeline and sinks, whatever the backend."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import partial
from typing import NamedTuple, cast


class Channel(StrEnum):
    """Logical outputs; each backend maps them to files or topics."""

    FINDINGS = "findings"
    ACTIONS = "actions"
    DEAD_LETTERS = "dead_letters"
    STATE = "state"


class SourceRecord(NamedTuple):
    """One input record and its position: (partition, offset) for Kafka, (0, line number) for files.

    Records are tuples rather than frozen dataclasses: one is made per input record and per output,
    and a frozen dataclass's ``__init__`` costs a ``object.__setattr__`` call per field."""

    value: bytes | None  # None: a Kafka tombstone, which is no event (a dead letter)
    partition: int
    offset: int
    key: bytes | None = None


new_source_record = cast(
    Callable[[tuple[bytes | None, int, int, bytes | None]], SourceRecord], partial(tuple.__new__, SourceRecord)
)
"""A ``SourceRecord`` from a tuple of its four fields, made in C: a NamedTuple's ``__new__`` is a Python function,
and a source makes one record per input record."""


class OutputRecord(NamedTuple):
    channel: Channel
    key: bytes | None
    value: bytes | None  # None is a tombstone (state changelog deletes)
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # pinned partition (the changelog follows its input partition)
