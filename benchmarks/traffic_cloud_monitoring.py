"""The traffic model on the labelled cloud-monitoring series: NAB-style score, precision, recall, time to detect.

    .venv/bin/python -m benchmarks.traffic_cloud_monitoring [--data DIR] [--threshold 0.5] [--per-file]

Every series is scored exactly as ``warden score-series`` scores it (same model, same settings
from the config), with one threshold for all of them: nothing is tuned per file.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.nab_score import SeriesScore, normalised, score_series
from detectors.traffic import series_params
from models.config import load_config
from streams.series import read_series, score_points

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cloud-monitoring" / "data"
SWEEP = (0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class ScoredSeries:
    path: Path
    scores: list[float]
    labels: list[int]
    timestamps_ms: list[int]


def _labels(path: Path) -> list[int]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        next(rows)
        return [int(float(row[2])) for row in rows if row]


def _score_file(job: tuple[Path, str | None]) -> ScoredSeries:
    path, config_path = job
    params = series_params(load_config(config_path).detectors.traffic_anomaly)
    points = read_series(path)
    scores = [0.0 if score is None else score for score in score_points(points, params)]
    return ScoredSeries(path, scores, _labels(path), [p.ts_ms for p in points])


def _summary_row(name: str, results: Sequence[SeriesScore], points: int) -> list[str]:
    windows = sum(r.windows for r in results)
    detected = sum(r.detected for r in results)
    onsets = sum(r.onsets for r in results)
    true_onsets = sum(r.true_onsets for r in results)
    delays_min = [d / 60 for r in results for d in r.delays_s]
    delays_points = [d for r in results for d in r.delays_points]
    return [
        name,
        str(len(results)),
        f"{points:,}",
        str(windows),
        f"{normalised(results):.1f}" if windows else "n/a",
        f"{true_onsets / onsets:.2f}" if onsets else "n/a",
        f"{detected / windows:.2f}" if windows else "n/a",
        str(onsets - true_onsets),
        f"{statistics.median(delays_points):+.0f}" if delays_points else "n/a",
        f"{statistics.median(delays_min):+.0f} min" if delays_min else "n/a",
    ]


HEADER = ["series", "files", "points", "windows", "NAB score", "precision", "recall", "false alarms",
          "median TTD (points)", "median TTD (time)"]


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of labelled CSV series")
    parser.add_argument("--config", help="YAML config (default: built-in defaults)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score that counts as a detection")
    parser.add_argument("--per-file", action="store_true", help="also a row per series")
    args = parser.parse_args(argv)
    files = sorted(args.data.rglob("*.csv"))
    with ProcessPoolExecutor(max_workers=2) as pool:
        scored = list(pool.map(_score_file, [(path, args.config) for path in files]))

    by_domain: dict[str, list[tuple[ScoredSeries, SeriesScore]]] = defaultdict(list)
    for series in scored:
        result = score_series(series.scores, series.labels, series.timestamps_ms, args.threshold)
        by_domain[series.path.parent.name].append((series, result))
    rows = []
    for domain, items in sorted(by_domain.items()):
        rows.append(_summary_row(domain, [r for _, r in items], sum(len(s.scores) for s, _ in items)))
        if args.per_file:
            rows += [_summary_row(f"  {s.path.stem}", [r], len(s.scores)) for s, r in items]
    every = [r for items in by_domain.values() for _, r in items]
    rows.append(_summary_row("**all**", every, sum(len(s.scores) for s in scored)))
    print(f"threshold {args.threshold}; NAB standard profile (A_TP 1, A_FP 0.11, A_FN 1); "
          "precision over alarm onsets; TTD from the first labelled point (negative = early)")
    print(_markdown(rows))
    sweep = ", ".join(
        f"{threshold}: {normalised([score_series(s.scores, s.labels, s.timestamps_ms, threshold) for s in scored]):.1f}"
        for threshold in SWEEP
    )
    print(f"\nNAB score at other thresholds (same threshold for every series): {sweep}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
