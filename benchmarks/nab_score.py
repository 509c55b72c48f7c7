"""NAB-style window scoring of anomaly scores against point labels (Numenta Anomaly Benchmark, standard profile).

Like NAB:
- runs of consecutive labelled points are one anomaly; its window extends it by half of
  ``10 % of the series length / number of anomalies`` on each side; overlapping windows merge;
- the first ``min(15 %, 750)`` points are probationary: nothing there is scored, and a window
  that ends inside it is dropped;
- the first detection in a window earns ``A_TP · σ(position)``, where σ is NAB's scaled sigmoid
  (≈ 0.99 at the window's start, 0 at its end): earlier is better; later detections in the same
  window are ignored;
- a window with no detection costs ``A_FN``;
- every detection outside a window costs ``A_FP`` (standard profile 0.11), in full before the
  first window, and after a window by how far past it (σ again, from 0 just after it to −1);
- the normalised score is ``100 · (raw − null) / (perfect − null)`` summed over series, where
  null detects nothing and perfect detects every window at its first point.

Besides NAB, it counts alarms as onsets (a score crossing the threshold from below), which is
what an operator is paged by: precision = onsets inside windows / all onsets, recall = windows
detected / windows, and the time to detect = first detection − first labelled point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0
WINDOW_SHARE = 0.1
PROBATION_SHARE, PROBATION_CAP = 0.15, 750


def scaled_sigmoid(position: float) -> float:
    """NAB's reward curve: ≈ 1 at the start of a window (−1), 0 at its end (0), → −1 after it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int
    """Inclusive point indices."""
    first_label: int


@dataclass(slots=True)
class SeriesScore:
    raw: float
    null: float
    perfect: float
    windows: int
    detected: int
    onsets: int
    true_onsets: int
    delays_points: list[int]
    delays_s: list[float]


def anomaly_windows(labels: Sequence[int]) -> list[Window]:
    runs: list[tuple[int, int]] = []
    for index, label in enumerate(labels):
        if not label:
            continue
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    if not runs:
        return []
    half = int(WINDOW_SHARE * len(labels) / len(runs) / 2)
    windows: list[Window] = []
    for first, last in runs:
        start, end = max(0, first - half), min(len(labels) - 1, last + half)
        if windows and start <= windows[-1].end + 1:
            merged = windows[-1]
            windows[-1] = Window(merged.start, max(merged.end, end), merged.first_label)
        else:
            windows.append(Window(start, end, first))
    return windows


def probation(length: int) -> int:
    return min(int(PROBATION_SHARE * length), PROBATION_CAP)


def score_series(
    scores: Sequence[float], labels: Sequence[int], timestamps_ms: Sequence[int], threshold: float
) -> SeriesScore:
    start = probation(len(labels))
    windows = [w for w in anomaly_windows(labels) if w.end >= start]
    inside = [-1] * len(labels)
    for number, window in enumerate(windows):
        for index in range(window.start, window.end + 1):
            inside[index] = number
    raw = 0.0
    detected_at: dict[int, int] = {}
    previous_window: Window | None = None
    onsets = true_onsets = 0
    for index in range(start, len(labels)):
        number = inside[index]
        if number >= 0:
            previous_window = windows[number]
        alarm = scores[index] >= threshold
        if alarm and (index == start or scores[index - 1] < threshold):
            onsets += 1
            true_onsets += number >= 0
        if not alarm:
            continue
        if number >= 0:
            if number not in detected_at:
                detected_at[number] = index
                window = windows[number]
                width = window.end - window.start + 1
                raw += A_TP * scaled_sigmoid(-(window.end - index + 1) / width)
        elif previous_window is None:
            raw -= A_FP
        else:
            width = previous_window.end - previous_window.start + 1
            raw += A_FP * scaled_sigmoid((index - previous_window.end) / width)
    raw -= A_FN * (len(windows) - len(detected_at))
    perfect = sum(A_TP * scaled_sigmoid(-1.0) for _ in windows)
    delays_points = [detected_at[n] - windows[n].first_label for n in sorted(detected_at)]
    delays_s = [
        (timestamps_ms[detected_at[n]] - timestamps_ms[windows[n].first_label]) / 1000 for n in sorted(detected_at)
    ]
    return SeriesScore(
        raw=raw,
        null=-A_FN * len(windows),
        perfect=perfect,
        windows=len(windows),
        detected=len(detected_at),
        onsets=onsets,
        true_onsets=true_onsets,
        delays_points=delays_points,
        delays_s=delays_s,
    )


def normalised(results: Sequence[SeriesScore]) -> float:
    raw = sum(r.raw for r in results)
    null = sum(r.null for r in results)
    perfect = sum(r.perfect for r in results)
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
