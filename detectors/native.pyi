"""Type stub of ``detectors.native``, Warden's compiled hot loops (``native/src``)."""

from collections.abc import Iterable, Sequence
from typing import Any

from detectors.seasonal import SeasonalState

class LaneLearner:
    """``learn(state, points)``: learn each (ts_ms, one value per lane) into a state of ``len(units)`` lanes."""

    def __init__(
        self,
        *,
        warmup: int,
        season_shrinkage: float,
        min_scale: float,
        huber_z: float,
        cusum_drift: float,
        cusum_limit: float,
        level_alpha: float,
        season_alpha: float,
        scale_alpha: float,
        units: list[float],
    ) -> None: ...
    def __call__(self, state: SeasonalState, points: Iterable[tuple[int, Sequence[float]]]) -> None: ...

def seasonal_layout() -> dict[str, int | float]:
    """The compiled learner's layout of ``SeasonalState.values`` and its constants, by their Python names."""

class SlidingDistinct:
    """Distinct items of several kinds over the last ``panes * pane_ms`` of event time (``native/src/sketches.rs``)."""

    def __init__(self, precision: int, pane_ms: int, panes: int) -> None: ...
    @property
    def dimensions(self) -> int: ...
    @property
    def starts(self) -> list[int]: ...
    def add(self, item: str, now_ms: int, dimension: int = 0) -> bool:
        """Count ``item`` of kind ``dimension``; returns whether it is (probably) new to the whole window."""
    def count(self, now_ms: int, dimension: int = 0) -> int:
        """Distinct items of kind ``dimension`` in the window that ends now."""
    def dump(self) -> dict[str, Any]: ...
    @staticmethod
    def load(data: dict[str, Any]) -> SlidingDistinct: ...

class UsageProfile:
    """One key's or account's recent spread: distinct counts, the last located use, recent distant hops."""

    last_seen_ms: int
    switches: list[int]
    last_flag_ms: int | None

    def __init__(self, last_seen_ms: int) -> None: ...
    def count(self, now_ms: int, dimension: int) -> int:
        """Distinct items of kind ``dimension`` in the window that ends now (0 before the first item)."""
    def dump(self) -> dict[str, Any]: ...
    @staticmethod
    def load(data: dict[str, Any]) -> UsageProfile: ...

class SharingWindow:
    """The window a ``UsageProfile`` counts in, and the step every event takes through a profile."""

    def __init__(self, precision: int, pane_ms: int, panes: int) -> None: ...
    def observe(
        self,
        key: UsageProfile,
        account: UsageProfile,
        items: tuple[str | None, ...],
        here: tuple[str, float, float | None] | None,
        now_ms: int,
    ) -> tuple[bool, list[Any] | None, bool] | None:
        """One event through its key's and its account's profiles: None when no item is new to either window and
        the key made no hop, else (an item new to the key's window, the key's use before a hop to another country
        as [country, latitude, longitude, ts_ms], an item new to the account's window)."""

def allocated_bytes() -> int:
    """Bytes the compiled module holds on its own heap (outside Python's allocator, unseen by tracemalloc)."""
