"""Type stub of ``detectors.native``, Warden's compiled hot loops (``native/src``)."""

from collections.abc import Iterable, Sequence

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
