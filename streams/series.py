"""``warden score-series``: the traffic detector's online model over any univariate CSV series.

Input rows are ``timestamp,value`` (a header is optional) or the cloud-monitoring layout
``TimeStamp,Value,Label`` (the label is ignored). Timestamps are RFC 3339 / ISO 8601 (a time
without a zone is read as UTC, as monitoring exports usually are) or epoch milliseconds.
Each value is scored before it is learned, so a score never sees its own point.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from detectors.seasonal import SeasonalModel, SeasonalParams
from models.timestamps import parse_timestamp, to_epoch_ms
from streams.files import open_binary


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    ts_text: str
    """The timestamp as written, echoed to the output unchanged."""
    ts_ms: int
    value: float | None
    """None for an empty or NaN cell: a gap in the series, neither scored nor learned."""
    value_text: str


class SeriesFormatError(ValueError):
    """A row that is not ``timestamp,value``: the message names the line and the reason."""


def _epoch_ms(text: str) -> int:
    stripped = text.strip()
    if not stripped.isdigit():
        try:
            parsed = datetime.fromisoformat(stripped)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return to_epoch_ms(parsed.replace(tzinfo=UTC))
    return to_epoch_ms(parse_timestamp(stripped))


def _value(text: str, line: int) -> float | None:
    try:
        value = float(text) if text.strip() else math.nan
    except ValueError:
        raise SeriesFormatError(f"line {line}: value: not a number: {text[:32]!r}") from None
    return None if math.isnan(value) else value


def read_series(path: Path) -> list[SeriesPoint]:
    with open_binary(path, "r") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        return list(parse_series(csv.reader(text)))


def parse_series(rows: Iterable[list[str]]) -> Iterator[SeriesPoint]:
    for line, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise SeriesFormatError(f"line {line}: expected timestamp,value, got {len(row)} field(s)")
        if line == 1 and row[0].strip().lower() in {"timestamp", "ts", "time"}:
            continue
        try:
            ts_ms = _epoch_ms(row[0])
        except ValueError as error:
            raise SeriesFormatError(f"line {line}: timestamp: {error}") from None
        value = _value(row[1], line)
        yield SeriesPoint(row[0].strip(), ts_ms, value, row[1].strip())


def score_points(points: Iterable[SeriesPoint], params: SeasonalParams) -> list[float | None]:
    """Score each point against the model of the points before it, then learn it (None for a gap)."""
    model = SeasonalModel(params)
    scores: list[float | None] = []
    for point in points:
        if point.value is None:
            scores.append(None)
            continue
        scores.append(model.score_one(point.ts_ms, point.value))
        model.learn_one(point.ts_ms, point.value)
    return scores


def write_scores(path: Path, points: list[SeriesPoint], scores: list[float | None]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for point, score in zip(points, scores, strict=True):
            writer.writerow([point.ts_text, point.value_text, "" if score is None else f"{score:.6f}"])
