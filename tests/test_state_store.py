"""SubjectStore: the least recently seen subject goes first at the cap, and an idle one comes back new."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Any

from detectors.state import SubjectStore
from models.config import WardenConfig
from models.telemetry import TelemetryEvent
from streams.pipeline import PartitionProcessor


@dataclass
class Seen:
    last_seen_ms: int
    calls: int = 0

    def dump(self) -> dict[str, Any]:
        return {"last_seen_ms": self.last_seen_ms, "calls": self.calls}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Seen:
        return cls(**data)


def _store(max_subjects: int, idle_ttl_ms: int = 1_000) -> SubjectStore[Seen]:
    return SubjectStore(Seen, Seen.load, max_subjects, idle_ttl_ms)


def _touch(store: SubjectStore[Seen], subject: str, now_ms: int) -> Seen:
    state = store.touch(subject, now_ms)
    state.last_seen_ms, state.calls = now_ms, state.calls + 1
    return state


def test_the_least_recently_seen_subject_is_evicted_at_the_cap() -> None:
    store = _store(max_subjects=2)
    _touch(store, "a", 0)
    _touch(store, "b", 10)
    _touch(store, "a", 20)  # a is now the most recently seen
    _touch(store, "c", 30)
    assert [subject for subject, _ in store.items()] == ["a", "c"]
    assert store.evicted == 1


def test_a_subject_back_after_an_idle_spell_is_new_and_the_most_recently_seen() -> None:
    store = _store(max_subjects=2, idle_ttl_ms=100)
    _touch(store, "a", 0)
    _touch(store, "b", 90)
    back = _touch(store, "a", 150)  # idle for 150 ms > 100: its old state is gone
    assert back.calls == 1
    _touch(store, "c", 160)  # b, seen at 90, is now the least recently seen
    assert [subject for subject, _ in store.items()] == ["a", "c"]


def test_a_dropped_partition_with_a_changelog_is_collected(small_events: list[TelemetryEvent]) -> None:
    # The changelog's hook refers back to the stores it watches: the collector must see that cycle (the hook
    # lives in the Python subclass's __dict__), or every revoked partition's state would stay in memory.
    processor = PartitionProcessor(0, WardenConfig(), changelog=True)
    processor.process(small_events[:200])
    stores = [weakref.ref(store) for owner in processor.detectors for store in owner.stores().values()]
    assert stores and all(store() is not None for store in stores)
    del processor
    gc.collect()
    assert all(store() is None for store in stores)


def test_the_changelog_hook_sees_a_subject_before_it_changes_or_leaves() -> None:
    store = _store(max_subjects=2)
    seen: list[tuple[str, dict[str, Any] | None]] = []
    store.before_change = lambda subject: seen.append((subject, store.dump_of(subject)))
    store.unwritten = {"a", "b"}
    _touch(store, "a", 0)  # new: nothing to copy yet
    _touch(store, "b", 10)
    _touch(store, "a", 20)  # changes a, which the checkpoint has yet to write
    _touch(store, "c", 30)  # evicts b, also unwritten
    assert seen == [("a", None), ("b", None), ("a", {"last_seen_ms": 0, "calls": 1}),
                    ("b", {"last_seen_ms": 10, "calls": 1})]
    store.track_changes = True
    store.unwritten = frozenset()
    _touch(store, "d", 40)
    assert store.drain_dirty() == {"a", "d"} and store.drain_dirty() == set()
