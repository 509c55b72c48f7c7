"""Bounded, snapshot-able per-subject state shared by every detector.

Memory is bounded two ways: a cap on subjects (least recently seen goes first) and idle
expiry on event time. Expiry is also checked lazily on access, so whether a subject was
physically swept or not never changes a result: replay and any partitioning agree.
"""

from __future__ import annotations

import binascii
from abc import ABC, abstractmethod
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Generic, Protocol, TypeVar


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


class SubjectStore(Generic[S]):
    """An LRU map of subject id → state with idle expiry and dirty tracking for the changelog."""

    def __init__(
        self,
        factory: Callable[[int], S],
        loader: Callable[[dict[str, Any]], S],
        max_subjects: int,
        idle_ttl_ms: int,
    ) -> None:
        self._factory = factory
        self._loader = loader
        self.max_subjects = max_subjects
        self.idle_ttl_ms = idle_ttl_ms
        self._states: OrderedDict[str, S] = OrderedDict()
        self._dirty: set[str] = set()
        # Off unless a changelog consumes the changes: a replay need not remember what it touched.
        self.track_changes = False
        self.unwritten: AbstractSet[str] = frozenset()
        """Subjects a checkpoint under way has yet to write: ``before_change`` is called with one of them
        before the store changes or drops it (the changelog copies it then)."""
        self.before_change: Callable[[str], None] = _no_checkpoint
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, subject: str) -> bool:
        return subject in self._states

    def items(self) -> Iterator[tuple[str, S]]:
        return iter(self._states.items())

    def touch(self, subject: str, now_ms: int) -> S:
        """The subject's state, fresh if it is new or idle past the TTL; marks it recently used and dirty."""
        if subject in self.unwritten:
            self.before_change(subject)
        state = self._states.get(subject)
        if state is None or now_ms - state.last_seen_ms > self.idle_ttl_ms:
            if state is not None:
                # Back after an idle spell: new, and so the most recently seen (assigning would keep its old place).
                del self._states[subject]
            state = self._factory(now_ms)
            self._states[subject] = state
            if len(self._states) > self.max_subjects:
                dropped = next(iter(self._states))
                if dropped in self.unwritten:
                    self.before_change(dropped)
                del self._states[dropped]
                self.evicted += 1
                if self.track_changes:
                    self._dirty.add(dropped)
        else:
            self._states.move_to_end(subject)
        if self.track_changes:
            self._dirty.add(subject)
        return state

    def expire(self, watermark_ms: int) -> int:
        """Forget subjects idle past the TTL at this event time; returns how many went."""
        stale = [s for s, st in self._states.items() if watermark_ms - st.last_seen_ms > self.idle_ttl_ms]
        for subject in stale:
            if subject in self.unwritten:
                self.before_change(subject)
            del self._states[subject]
        if self.track_changes:
            self._dirty.update(stale)
        return len(stale)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {subject: state.dump() for subject, state in self._states.items()}

    def restore(self, snapshot: dict[str, dict[str, Any]]) -> None:
        self._states = OrderedDict((subject, self._loader(data)) for subject, data in snapshot.items())
        self._dirty.clear()

    def drain_dirty(self) -> set[str]:
        """Subjects changed (or gone) since the last drain: what one batch's changelog must carry."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def dump_of(self, subject: str) -> dict[str, Any] | None:
        """The subject's state as JSON-able data, or None when the store does not hold it."""
        state = self._states.get(subject)
        return None if state is None else state.dump()

    def apply_change(self, subject: str, data: dict[str, Any] | None) -> None:
        """Replay one changelog record (restore after a rebalance or crash)."""
        if data is None:
            self._states.pop(subject, None)
        else:
            self._states[subject] = self._loader(data)


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
