"""Bounded distinct counters: HyperLogLog, and a sliding event-time window of them.

Both dump to plain JSON (registers as base64), so they ride in ``SubjectStore`` snapshots and the
state changelog like any other state. Hashing is BLAKE2b, never Python's salted ``hash()``, so a
replay on another process counts exactly the same.
"""

from __future__ import annotations

import base64
import math
from array import array
from bisect import bisect_left
from functools import lru_cache
from hashlib import blake2b
from itertools import pairwise
from typing import Any

from detectors.state import base64_text

_HASH_BITS = 64
_INVERSE_POWERS = tuple(2.0**-rank for rank in range(256))  # 2**-register, looked up rather than computed


@lru_cache(maxsize=65_536)  # the same addresses, devices and agents recur on every call of a client
def _position(item: str, precision: int) -> tuple[int, int]:
    """The register ``item`` lands in and the rank it would set there, in a sketch of this precision."""
    hashed = int.from_bytes(blake2b(item.encode("utf-8"), digest_size=8).digest(), "big")
    rest_bits = _HASH_BITS - precision
    rest = hashed & ((1 << rest_bits) - 1)
    return hashed >> rest_bits, rest_bits - rest.bit_length() + 1


class HyperLogLog:
    """Flajolet et al.'s cardinality sketch: ``2**precision`` one-byte registers, ~1.04/sqrt(m) error.

    Small counts (what a sharing detector compares with thresholds of 3 to 10) fall back to linear
    counting, which is close to exact there.
    """

    __slots__ = ("precision", "registers")

    def __init__(self, precision: int, registers: bytearray | None = None) -> None:
        if not 4 <= precision <= 16:
            raise ValueError("precision must be between 4 and 16")
        self.precision = precision
        self.registers = registers if registers is not None else bytearray(1 << precision)

    def position(self, item: str) -> tuple[int, int]:
        """The register ``item`` lands in and the rank it would set there."""
        return _position(item, self.precision)

    def add(self, item: str) -> bool:
        """Count ``item``; returns whether the sketch changed (a repeat never changes it)."""
        index, rank = self.position(item)
        if rank <= self.registers[index]:
            return False
        self.registers[index] = rank
        return True

    def merge(self, other: HyperLogLog) -> None:
        if other.precision != self.precision:
            raise ValueError("cannot merge sketches of different precision")
        self.registers = bytearray(map(max, self.registers, other.registers))

    def count(self) -> int:
        m = len(self.registers)
        zeros = self.registers.count(0)
        if zeros == m:
            return 0
        alpha = 0.7213 / (1 + 1.079 / m) if m >= 128 else {16: 0.673, 32: 0.697, 64: 0.709}[m]
        estimate = alpha * m * m / sum(map(_INVERSE_POWERS.__getitem__, self.registers))
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return round(estimate)

    def dump(self) -> str:
        return base64_text(self.registers)

    @classmethod
    def load(cls, data: str) -> HyperLogLog:
        registers = bytearray(base64.b64decode(data))
        return cls(int(math.log2(len(registers))), registers)


class SlidingDistinct:
    """Distinct items of ``dimensions`` kinds (say devices, networks, countries) over the last ``panes * pane_ms``
    of event time: one sketch per pane and kind.

    A pane leaves when the window passes it, so the counts forget old items without remembering any item.
    The kinds share their panes, and all registers lie one after another in one buffer, in the order of
    ``starts``: per pane, the first kind's ``2**precision`` registers, then the next kind's. A subject costs
    one object, one buffer and the pane starts, not those per kind; a kind with no item in a pane keeps zero
    registers there, which no count or union can tell from a pane it never had. The buffer holds kinds
    ``0 … dimensions - 1`` and widens when a later kind's first item comes, so a caller numbers its kinds
    commonest first. ``starts`` is always ascending (a late event's new pane goes in its place): trimming
    drops a prefix, and a dump, which every changelog record of a key or account carries, is the buffer as is.
    """

    __slots__ = ("dimensions", "pane_ms", "panes", "precision", "registers", "starts")

    def __init__(
        self,
        precision: int,
        pane_ms: int,
        panes: int,
        dimensions: int = 1,
        starts: array[int] | None = None,
        registers: bytearray | None = None,
    ) -> None:
        self.precision = precision
        self.pane_ms = pane_ms
        self.panes = panes
        self.dimensions = dimensions
        self.starts = starts if starts is not None else array("q")  # machine integers, not int objects
        self.registers = registers if registers is not None else bytearray()

    def sketches(self, dimension: int = 0) -> dict[int, HyperLogLog]:
        """A copy of each pane's sketch of one kind, by the pane's start."""
        m = 1 << self.precision
        block, first = m * self.dimensions, dimension * m
        return {
            start: HyperLogLog(self.precision, self.registers[k * block + first : k * block + first + m])
            for k, start in enumerate(self.starts)
        }

    def _trim(self, now_ms: int) -> None:
        current = now_ms - now_ms % self.pane_ms
        left = bisect_left(self.starts, current - (self.panes - 1) * self.pane_ms)
        if left:
            del self.starts[:left]
            del self.registers[: left * (self.dimensions << self.precision)]

    def add(self, item: str, now_ms: int, dimension: int = 0) -> bool:
        """Count ``item`` of kind ``dimension`` now; returns whether it is (probably) new to the whole window.

        An item seen in an older pane and repeated in a new one does not count as new, so a
        window merely sliding over the same users never looks like a change.
        """
        if dimension >= self.dimensions:
            self._widen(dimension + 1)
        current = now_ms - now_ms % self.pane_ms
        index, rank = _position(item, self.precision)
        offset = (dimension << self.precision) + index
        block = self.dimensions << self.precision
        pane = bisect_left(self.starts, current)
        if pane < len(self.starts) and self.starts[pane] == current:
            at = pane * block + offset
            if rank <= self.registers[at]:  # a repeat within the pane, by far the commonest case
                return False
        else:  # a new pane is the only moment an old one can have left the window
            self._trim(now_ms)
            pane = bisect_left(self.starts, current)
            self.starts.insert(pane, current)
            self.registers[pane * block : pane * block] = bytes(block)
            at = pane * block + offset
        seen = max(self.registers[offset::block])
        self.registers[at] = rank
        return rank > seen

    def _widen(self, dimensions: int) -> None:
        """Room for kinds up to ``dimensions - 1``: zero registers for the new kinds in every pane."""
        block = self.dimensions << self.precision
        zeros = bytes((dimensions - self.dimensions) << self.precision)
        self.registers = bytearray().join(
            self.registers[k : k + block] + zeros for k in range(0, len(self.registers), block)
        )
        self.dimensions = dimensions

    def count(self, now_ms: int, dimension: int = 0) -> int:
        """Distinct items of kind ``dimension`` in the window that ends now."""
        self._trim(now_ms)
        if not self.starts or dimension >= self.dimensions:
            return 0
        m = 1 << self.precision
        block, first = m * self.dimensions, dimension * m
        registers = self.registers
        union = (
            registers[first : first + m]
            if len(self.starts) == 1
            else bytearray(map(max, *(registers[k : k + m] for k in range(first, len(registers), block))))
        )
        return HyperLogLog(self.precision, union).count()

    def dump(self) -> dict[str, Any]:
        """Pane starts and all registers in one base64 string, in pane order: one encoding call, not one per pane."""
        return {
            "precision": self.precision,
            "pane_ms": self.pane_ms,
            "panes": self.panes,
            "dimensions": self.dimensions,
            "starts": self.starts.tolist(),
            "registers": base64_text(self.registers),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> SlidingDistinct:
        registers = bytearray(base64.b64decode(data["registers"]))
        if len(registers) != len(data["starts"]) * data["dimensions"] << data["precision"]:
            raise ValueError("sketch registers do not match their panes, kinds and precision")
        if any(later <= earlier for earlier, later in pairwise(data["starts"])):
            raise ValueError("sketch pane starts are not in ascending order")
        return cls(
            data["precision"], data["pane_ms"], data["panes"], data["dimensions"], array("q", data["starts"]), registers
        )
