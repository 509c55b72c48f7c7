"""SubjectStore: the least recently seen subject goes first at the cap, and an idle one comes back new."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detectors.state import SubjectStore


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
