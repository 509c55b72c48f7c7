"""Bounded distinct counters: HyperLogLog, and a sliding event-time window of them.

Both dump to plain JSON (registers as base64), so they ride in ``SubjectStore`` snapshots and the
state changelog like any other state. Hashing is BLAKE2b, never Python's salted ``hash()``, so a
replay on another process counts exactly the same.
"""

from __future__ import annotations

import base64
import math
from functools import lru_cache
from hashlib import blake2b
from typing import Any

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
        return base64.b64encode(bytes(self.registers)).decode("ascii")

    @classmethod
    def load(cls, data: str) -> HyperLogLog:
        registers = bytearray(base64.b64decode(data))
        return cls(int(math.log2(len(registers))), registers)


class SlidingDistinct:
    """Distinct items over the last ``panes * pane_ms`` of event time: one sketch per pane.

    Memory is at most ``panes + 1`` sketches whatever the input; a pane leaves when the window
    passes it, so the count forgets old items without remembering any item.
    """

    __slots__ = ("pane_ms", "panes", "precision", "sketches")

    def __init__(self, precision: int, pane_ms: int, panes: int, sketches: dict[int, HyperLogLog] | None = None):
        self.precision = precision
        self.pane_ms = pane_ms
        self.panes = panes
        self.sketches: dict[int, HyperLogLog] = sketches if sketches is not None else {}

    def _trim(self, now_ms: int) -> int:
        current = now_ms - now_ms % self.pane_ms
        oldest = current - (self.panes - 1) * self.pane_ms
        for start in [s for s in self.sketches if s < oldest]:
            del self.sketches[start]
        return current

    def add(self, item: str, now_ms: int) -> bool:
        """Count ``item`` now; returns whether it is (probably) new to the whole window.

        An item seen in an older pane and repeated in a new one does not count as new, so a
        window merely sliding over the same users never looks like a change.
        """
        current = now_ms - now_ms % self.pane_ms
        sketch = self.sketches.get(current)
        index, rank = _position(item, self.precision)
        if sketch is None:  # a new pane is the only moment an old one can have left the window
            self._trim(now_ms)
            sketch = self.sketches[current] = HyperLogLog(self.precision)
        elif rank <= sketch.registers[index]:  # a repeat within the pane, by far the commonest case
            return False
        seen = max(s.registers[index] for s in self.sketches.values())
        sketch.registers[index] = rank
        return rank > seen

    def count(self, now_ms: int) -> int:
        self._trim(now_ms)
        if not self.sketches:
            return 0
        panes = [sketch.registers for sketch in self.sketches.values()]
        if len({len(registers) for registers in panes}) > 1:
            raise ValueError("cannot merge sketches of different precision")
        union = panes[0] if len(panes) == 1 else bytearray(map(max, *panes))
        return HyperLogLog(self.precision, union).count()

    def dump(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "pane_ms": self.pane_ms,
            "panes": self.panes,
            "sketches": {str(start): self.sketches[start].dump() for start in sorted(self.sketches)},
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> SlidingDistinct:
        sketches = {int(start): HyperLogLog.load(registers) for start, registers in data["sketches"].items()}
        return cls(data["precision"], data["pane_ms"], data["panes"], sketches)
