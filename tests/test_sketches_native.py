"""The compiled sliding sketch (``detectors.native.SlidingDistinct``, what key-sharing profiles count in) against
a plain-Python statement of it: the same answers to every add, the same counts and the same dumps, on any stream."""

from __future__ import annotations

import base64
import math
from bisect import bisect_left
from hashlib import blake2b
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import native
from detectors.native import SlidingDistinct, UsageProfile


class ReferenceSketch:
    """One HyperLogLog per pane and kind, each pane's kinds in one block of registers, as the compiled one."""

    def __init__(self, precision: int, pane_ms: int, panes: int) -> None:
        self.precision, self.pane_ms, self.panes = precision, pane_ms, panes
        self.starts: list[int] = []
        self.blocks: list[list[bytearray]] = []  # per pane, per kind, 2**precision registers

    def position(self, item: str) -> tuple[int, int]:
        hashed = int.from_bytes(blake2b(item.encode("utf-8"), digest_size=8).digest(), "big")
        rest_bits = 64 - self.precision
        rest = hashed & ((1 << rest_bits) - 1)
        return hashed >> rest_bits, rest_bits - rest.bit_length() + 1

    def trim(self, now: int) -> None:
        oldest = now - now % self.pane_ms - (self.panes - 1) * self.pane_ms
        while self.starts and self.starts[0] < oldest:
            del self.starts[0], self.blocks[0]

    def kinds(self) -> int:
        return len(self.blocks[0]) if self.blocks else 1

    def add(self, item: str, now: int, kind: int) -> bool:
        for block in self.blocks:  # widen
            block.extend(bytearray(1 << self.precision) for _ in range(len(block), kind + 1))
        width = max(self.kinds(), kind + 1)
        current = now - now % self.pane_ms
        index, rank = self.position(item)
        if current not in self.starts:
            self.trim(now)
            at = bisect_left(self.starts, current)
            self.starts.insert(at, current)
            self.blocks.insert(at, [bytearray(1 << self.precision) for _ in range(width)])
        pane = self.starts.index(current)
        if rank <= self.blocks[pane][kind][index]:
            return False
        seen = max(block[kind][index] for block in self.blocks)
        self.blocks[pane][kind][index] = rank
        return rank > seen

    def count(self, now: int, kind: int) -> int:
        self.trim(now)
        if not self.blocks or kind >= self.kinds():
            return 0
        union = [max(ranks) for ranks in zip(*(block[kind] for block in self.blocks), strict=True)]
        m, zeros = len(union), union.count(0)
        if zeros == m:
            return 0
        alpha = 0.7213 / (1 + 1.079 / m) if m >= 128 else {16: 0.673, 32: 0.697, 64: 0.709}[m]
        estimate = alpha * m * m / sum(2.0**-rank for rank in union)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return round(estimate)

    def dump(self) -> dict[str, Any]:
        registers = b"".join(bytes(sketch) for block in self.blocks for sketch in block)
        return {
            "precision": self.precision,
            "pane_ms": self.pane_ms,
            "panes": self.panes,
            "dimensions": self.kinds(),
            "starts": self.starts,
            "registers": base64.b64encode(registers).decode("ascii"),
        }


STREAM = st.lists(
    st.tuples(st.integers(0, 4 * 10**7), st.integers(0, 4), st.text(min_size=1, max_size=6)), max_size=300
)


@settings(max_examples=60, deadline=None)
@given(
    stream=STREAM,
    precision=st.integers(4, 12),
    pane_ms=st.integers(1, 2 * 10**6),
    panes=st.integers(1, 6),
    shuffled=st.booleans(),
)
def test_the_compiled_sketch_answers_as_the_reference(
    stream: list[tuple[int, int, str]], precision: int, pane_ms: int, panes: int, shuffled: bool
) -> None:
    # In time order, and out of it: late events open panes behind the current one.
    events = stream if shuffled else sorted(stream)
    compiled, reference = SlidingDistinct(precision, pane_ms, panes), ReferenceSketch(precision, pane_ms, panes)
    for step, (now, kind, item) in enumerate(events):
        assert compiled.add(item, now, kind) == reference.add(item, now, kind)
        if step % 7 == 0:
            assert [compiled.count(now, k) for k in range(6)] == [reference.count(now, k) for k in range(6)]
            assert compiled.dump() == reference.dump()
    last = max((now for now, _, _ in events), default=0)
    assert compiled.dump() == reference.dump()
    restored = SlidingDistinct.load(compiled.dump())
    assert [restored.count(last, k) for k in range(5)] == [reference.count(last, k) for k in range(5)]


def test_large_counts_leave_linear_counting_as_the_reference_does() -> None:
    for precision in (4, 6, 8):
        compiled, reference = SlidingDistinct(precision, 10**9, 1), ReferenceSketch(precision, 10**9, 1)
        counts = []
        for i in range(6000):
            compiled.add(f"item-{i}", 0)
            reference.add(f"item-{i}", 0, 0)
            if i % 97 == 0:
                assert compiled.count(0) == reference.count(0, 0)
                counts.append(compiled.count(0))
        assert counts[-1] > 2.5 * (1 << precision)  # the raw estimate was reached


def test_bad_dumps_and_shapes_are_refused_with_the_reason() -> None:
    sketch = SlidingDistinct(6, 1000, 4)
    sketch.add("a", 0)
    sketch.add("b", 2000, 2)  # a second pane, and a widened block
    dump = sketch.dump()
    with pytest.raises(ValueError, match="do not match"):
        SlidingDistinct.load({**dump, "starts": [*dump["starts"], 10**8]})
    with pytest.raises(ValueError, match="ascending"):
        SlidingDistinct.load({**dump, "starts": dump["starts"][::-1]})
    with pytest.raises(ValueError, match="base64"):
        SlidingDistinct.load({**dump, "registers": "not base64!"})
    with pytest.raises(ValueError, match="precision must be between 4 and 16"):
        SlidingDistinct(3, 1000, 4)
    with pytest.raises(ValueError, match="at least one pane"):
        SlidingDistinct(6, 0, 4)
    with pytest.raises(KeyError):
        UsageProfile.load({"last_seen_ms": 1})


def test_the_module_counts_the_heap_its_state_holds() -> None:
    # The state benchmark adds this count to tracemalloc's, which cannot see the compiled module's heap.
    before = native.allocated_bytes()
    sketches = [SlidingDistinct(8, 1000, 4) for _ in range(100)]
    for sketch in sketches:
        sketch.add("a", 0, 2)  # one pane of three kinds: 768 registers
    held = native.allocated_bytes() - before
    assert 100 * 768 <= held < 100 * 768 * 2
    del sketches
    assert native.allocated_bytes() - before < 100 * 768
