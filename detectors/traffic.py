"""Abnormal traffic (clauses 7.1, 11.1(5)): each account and API key against its own seasonal history.

Per subject and event-time bucket, three signals: requests (volume), credits burnt, and
auth / rate-limit errors (401, 403, 429 by default). Each has its own ``SeasonalModel`` (level,
hour-of-day and day-of-week profile, robust scale, CUSUM), learned from closed buckets, empty
ones included. The open bucket is scored as it fills: a partial count only grows, so when it is
already far above the full bucket's expectation the surge is real and is flagged at once.

A new subject is compared with configured population priors, which its own history replaces
over ``warmup_buckets``; upward-only scoring never expects less than the prior meanwhile, so a
subject is never flagged just for being new. The priors are configured rather than learned from
the partition's other accounts, so that a subject's findings never depend on which accounts
share its partition (replay and any partitioning agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from detectors.base import SteppedDetector, new_store
from detectors.native import TrafficSubject, TrafficWindow
from detectors.seasonal import Assessment, Prior, SeasonalModel, SeasonalParams, SeasonalState, lane_learner
from detectors.state import SubjectStore
from models.config import StateConfig, TrafficAnomalyConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent
from models.timestamps import format_timestamp, from_epoch_ms


class Signal(StrEnum):
    VOLUME = "volume"
    CREDITS = "credits"
    ERRORS = "errors"


_SIGNALS = tuple(Signal)
"""The signals in a fixed order: ``TrafficSubject.observed`` and ``alarm_floors`` follow it."""
_UNITS = {Signal.VOLUME: "requests", Signal.CREDITS: "credits", Signal.ERRORS: "auth/rate-limit errors"}


def model_params(config: TrafficAnomalyConfig, *, two_sided: bool, unit: float | None) -> SeasonalParams:
    """The online model's settings from the config: one source for the detector and score-series."""
    return SeasonalParams(
        level_alpha=config.level_alpha,
        season_alpha=config.season_alpha,
        scale_alpha=config.scale_alpha,
        season_shrinkage=config.season_shrinkage,
        huber_z=config.huber_z,
        cusum_drift=config.cusum_drift,
        cusum_limit=config.cusum_limit,
        alarm_z=config.alarm_z,
        score_slope=config.score_slope,
        min_scale=config.min_scale,
        warmup=config.warmup_buckets,
        two_sided=two_sided,
        unit=unit,
        unit_fraction=config.series_unit_fraction,
    )


def series_params(config: TrafficAnomalyConfig) -> SeasonalParams:
    """For any univariate series: a drop is as anomalous as a rise, and the asinh unit is learned from
    the series (its values are not request counts, where one request is the natural unit)."""
    return model_params(config, two_sided=True, unit=None)


def _new_subject(now_ms: int) -> TrafficSubject:
    """A subject's open bucket (none yet) and its signals' models, one lane each in ``Signal`` order: they learn
    the same buckets, so they share a clock."""
    return TrafficSubject(now_ms, SeasonalState(lanes=len(_SIGNALS)))


def _load_subject(data: dict[str, Any]) -> TrafficSubject:
    return TrafficSubject.load(data, SeasonalState.load(data["model"]))


@dataclass(frozen=True, slots=True)
class _Flag:
    signal: Signal
    observed: float
    assessment: Assessment
    ratio: float


class TrafficAnomalyDetector(SteppedDetector):
    """Flags surges, sustained step changes and error storms per account and per API key."""

    name = "traffic_anomaly"
    model_version = "traffic-seasonal-1.0"
    clauses = ("7.1", "11.1(5)")

    def __init__(self, config: TrafficAnomalyConfig, state: StateConfig) -> None:
        self.config = config
        self.bucket_ms = config.bucket_s * 1000
        # Upward only: less traffic than usual is nobody's abuse.
        self.params = {
            Signal.VOLUME: model_params(config, two_sided=False, unit=config.count_unit),
            Signal.CREDITS: model_params(config, two_sided=False, unit=config.credits_unit),
            Signal.ERRORS: model_params(config, two_sided=False, unit=config.count_unit),
        }
        spread = config.prior_spread
        self.priors = {
            Signal.VOLUME: Prior(config.prior_rate_per_bucket, config.prior_rate_per_bucket * spread),
            Signal.CREDITS: Prior(config.prior_credits_per_bucket, config.prior_credits_per_bucket * spread),
            Signal.ERRORS: Prior(config.prior_errors_per_bucket, config.prior_errors_per_bucket * spread),
        }
        # One state of three lanes per subject, in ``Signal`` order: the lanes share every setting but the unit.
        units = (config.count_unit, config.credits_unit, config.count_unit)
        self.window = TrafficWindow(
            bucket_ms=self.bucket_ms,
            max_gap_buckets=config.max_gap_buckets,
            learner=lane_learner(self.params[Signal.VOLUME], units),
            min_events=config.min_bucket_events,
            min_credits=config.min_bucket_credits,
            min_errors=config.min_error_events,
            min_error_share=config.min_error_share,
            error_statuses=sorted(set(config.error_statuses)),
            cooldown_ms=config.cooldown_s * 1000,
        )
        self.accounts: SubjectStore[TrafficSubject] = new_store(_new_subject, _load_subject, state)
        # Keyed "account/key": a key's state stays scoped to its account, like every subject.
        self.keys: SubjectStore[TrafficSubject] = new_store(_new_subject, _load_subject, state)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"accounts": self.accounts, "keys": self.keys}

    def _models(self, subject: TrafficSubject) -> list[SeasonalModel]:
        """The subject's model of each signal, in ``Signal`` order."""
        return [
            SeasonalModel(self.params[signal], subject.model, self.priors[signal], lane)
            for lane, signal in enumerate(_SIGNALS)
        ]

    def _passes_floor(self, subject: TrafficSubject, signal: Signal) -> bool:
        cfg = self.config
        if signal is Signal.VOLUME:
            return subject.requests >= cfg.min_bucket_events
        if signal is Signal.CREDITS:
            return subject.credits >= cfg.min_bucket_credits
        return subject.errors >= cfg.min_error_events and subject.errors >= cfg.min_error_share * subject.requests

    def _may_flag(self, subject: TrafficSubject) -> bool:
        """Whether ``_strongest_flag`` could find anything (``TrafficWindow.may_flag``), with the open bucket's
        alarm floors worked out once it is past a configured floor."""
        if subject.alarm_floors is None and not self.window.below_floors(subject):
            subject.alarm_floors = self._alarm_floors(subject)
        return self.window.may_flag(subject)

    def _alarm_floors(self, subject: TrafficSubject) -> tuple[float, float, float]:
        """Per signal, the larger of its configured floor and the value at which its model could reach
        ``flag_score`` (and ``surge_ratio`` × expected, for volume and credits) in the open bucket."""
        cfg = self.config
        bucket_start = subject.bucket * self.bucket_ms
        floors = []
        configured = (cfg.min_bucket_events, cfg.min_bucket_credits, cfg.min_error_events)
        for signal, model, floor in zip(_SIGNALS, self._models(subject), configured, strict=True):
            threshold = model.threshold(bucket_start, cfg.flag_score)
            lowest = threshold.value
            if signal is not Signal.ERRORS:
                # Some 1e-15 of rounding in the ratio is nothing to the 1e-9 taken off here.
                surge = cfg.surge_ratio * max(threshold.expected, 1e-9)
                lowest = max(lowest, surge * (1 - 1e-9))
            floors.append(max(floor, lowest))
        return floors[0], floors[1], floors[2]

    def _strongest_flag(self, subject: TrafficSubject) -> _Flag | None:
        cfg = self.config
        best: _Flag | None = None
        bucket_start = subject.bucket * self.bucket_ms
        for signal, model, observed in zip(_SIGNALS, self._models(subject), subject.observed(), strict=True):
            if not self._passes_floor(subject, signal):
                continue
            assessment = model.assess(bucket_start, observed)
            ratio = observed / max(assessment.expected, 1e-9)
            # An error storm is judged by its share (the floor above), not by a ratio to a near-zero norm.
            if assessment.score < cfg.flag_score or (signal is not Signal.ERRORS and ratio < cfg.surge_ratio):
                continue
            if best is None or assessment.score > best.assessment.score:
                best = _Flag(signal, observed, assessment, ratio)
        return best

    def step(self, events: list[TelemetryEvent], start: int) -> tuple[int, TrafficSubject, TrafficSubject] | None:
        return self.window.step(self.accounts, self.keys, events, start)

    def judge(self, event: TelemetryEvent, account: TrafficSubject, key: TrafficSubject) -> list[Finding]:
        # One finding per account and cooldown (the step stops at no account cooling down), about the account
        # or about one of its keys, whichever shows first: a key's surge is usually its account's too, and one
        # incident is one finding.
        now = event.ts_ms
        flag = self._strongest_flag(account) if self._may_flag(account) else None
        if flag is not None:
            account.last_flag_ms = now
            return [self._finding(event, account, flag, SubjectType.ACCOUNT)]
        flag = self._strongest_flag(key) if self._may_flag(key) else None
        if flag is None:
            return []
        account.last_flag_ms = key.last_flag_ms = now
        return [self._finding(event, key, flag, SubjectType.API_KEY)]

    def _finding(self, event: TelemetryEvent, subject: TrafficSubject, flag: _Flag, kind: SubjectType) -> Finding:
        cfg = self.config
        bucket_start_ms = subject.bucket * self.bucket_ms
        history = subject.model.n
        expected = flag.assessment.expected
        who = "Account" if kind is SubjectType.ACCOUNT else f"API key {event.api_key_id}"
        observed_text = f"{flag.observed:,.0f}"
        if flag.signal is Signal.ERRORS:
            detail = f"{subject.errors / subject.requests:.0%} of its {subject.requests} calls"
        else:
            detail = f"{flag.ratio:.1f}x the expected {expected:,.1f}"
        summary = (
            f"{who} had {observed_text} {_UNITS[flag.signal]} in the {cfg.bucket_s}s bucket from "
            f"{format_timestamp(from_epoch_ms(bucket_start_ms))}, {detail} (z {flag.assessment.z:.1f}): "
            f"abnormal use (7.1, 11.1(5))."
        )
        # Rejected calls cost the service little: an error storm alone never goes past medium.
        high = flag.signal is not Signal.ERRORS and flag.ratio >= cfg.high_severity_ratio
        severity = Severity.HIGH if high else Severity.MEDIUM
        return self.finding(
            event,
            subject_type=kind,
            subject_id=event.account_id if kind is SubjectType.ACCOUNT else event.api_key_id,
            window_start_ms=bucket_start_ms,
            score=flag.assessment.score,
            severity=severity,
            summary=summary,
            evidence={
                "signal": flag.signal.value,
                "bucket_s": cfg.bucket_s,
                "observed": round(flag.observed, 3),
                "expected": round(expected, 3),
                "ratio": round(flag.ratio, 3),
                "z": round(flag.assessment.z, 3),
                "cusum_z": round(flag.assessment.cusum_z, 3),
                "requests": subject.requests,
                "credits": round(subject.credits, 3),
                "errors": subject.errors,
                "history_buckets": history,
                "cold_start": history < cfg.warmup_buckets,
                "event_ids": [event.event_id],
            },
        )
