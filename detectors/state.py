"""Bounded, snapshot-able per-subject state shared by every detector.

Memory is bounded two ways: a cap on subjects (least recently seen goes first) and idle
expiry on event time. Expiry is also checked lazily on access, so whether a subject was
physically swept or not never changes a result: replay and any partitioning agree.
"""

from __future__ import annotations

import binascii
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from detectors import native


class SubjectState(Protocol):
    """What one subject remembers. ``last_seen_ms`` drives idle expiry."""

    last_seen_ms: int

    def dump(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=SubjectState)


def _no_checkpoint(subject: str) -> None:
    """``SubjectStore.before_change`` of a store without a changelog: never called, as nothing is unwritten."""


def base64_text(data: bytes | bytearray | array[Any]) -> str:
    """Binary state (sketch registers, float arrays) as base64 text in a dump: what ``base64.b64encode`` gives,
    straight from the buffer, without that function's Python wrapper (dumps run for every changelog record)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class SubjectStore(native.SubjectStore[S]):
    """An LRU map of subject id → state with idle expiry and dirty tracking for the changelog.

    The map and its methods are compiled (``native/src/state.rs``): every event touches several stores. This
    subclass holds what refers back to the stores, the changelog's ``before_change`` hook, in its ``__dict__``,
    where the collector sees the cycle.
    """

    before_change: Callable[[str], None] = staticmethod(_no_checkpoint)
    """Called with a subject of ``unwritten`` before the store changes or drops it (the changelog copies it)."""


class StateOwner(ABC):
    """Anything whose memory lives in named ``SubjectStore``s (every detector, the enforcement policy): sweeps,
    snapshots for hot reload and restores go through the stores, the same way for all of them."""

    @abstractmethod
    def stores(self) -> dict[str, SubjectStore[Any]]:
        """Named state stores; everything the owner remembers lives in them."""

    def subject_count(self) -> int:
        return sum(len(store) for store in self.stores().values())

    def expire(self, watermark_ms: int) -> int:
        return sum(store.expire(watermark_ms) for store in self.stores().values())

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {name: store.snapshot() for name, store in self.stores().items()}

    def restore(self, snapshot: dict[str, dict[str, dict[str, Any]]]) -> None:
        for name, store in self.stores().items():
            store.restore(snapshot.get(name, {}))
