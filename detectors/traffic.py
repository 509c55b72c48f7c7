"""Abnormal traffic: an account's request rate against its own smoothed level (clauses 7.1, 11.1(5))."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from detectors.base import Detector, cooling_down, new_store
from detectors.state import SubjectStore
from models.config import StateConfig, TrafficAnomalyConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent


@dataclass(slots=True)
class AccountRate:
    last_seen_ms: int
    bucket: int = -1
    count: int = 0
    level: float = 0.0
    buckets_seen: int = 0
    last_flag_ms: int | None = None

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> AccountRate:
        return cls(**data)


class TrafficAnomalyDetector(Detector):
    """Flags a bucket whose count exceeds ``surge_ratio`` × the expected level.

    The expected level is an EWMA of the account's own past buckets; until ``warmup_buckets``
    have been seen, the population prior is a floor, so a new account is never flagged just
    for being new. Surging buckets are clipped before they teach the level, so a long surge
    does not become the new normal.
    """

    name = "traffic_anomaly"
    model_version = "traffic-ewma-0.1"
    clauses = ("7.1", "11.1(5)")

    def __init__(self, config: TrafficAnomalyConfig, state: StateConfig) -> None:
        self.config = config
        self.accounts: SubjectStore[AccountRate] = new_store(AccountRate, AccountRate.load, state)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"accounts": self.accounts}

    def expected_level(self, rate: AccountRate) -> float:
        if rate.buckets_seen < self.config.warmup_buckets:
            return max(rate.level, self.config.prior_rate_per_bucket)
        return rate.level

    def _close_buckets(self, rate: AccountRate, bucket: int) -> None:
        cfg = self.config
        if rate.bucket >= 0:
            ceiling = max(self.expected_level(rate), 1.0) * cfg.surge_ratio
            rate.level += cfg.level_alpha * (min(rate.count, ceiling) - rate.level)
            rate.buckets_seen += 1
            idle = min(bucket - rate.bucket - 1, 10_000)
            if idle > 0:
                rate.level *= (1.0 - cfg.level_alpha) ** idle
                rate.buckets_seen += idle
        rate.bucket = bucket
        rate.count = 0

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        cfg = self.config
        now = event.ts_ms
        rate = self.accounts.touch(event.account_id, now)
        rate.last_seen_ms = max(rate.last_seen_ms, now)
        bucket = now // (cfg.bucket_s * 1000)
        if bucket > rate.bucket:
            self._close_buckets(rate, bucket)
        rate.count += 1
        if rate.count < cfg.min_bucket_events or cooling_down(rate.last_flag_ms, now, cfg.cooldown_s):
            return []
        expected = max(self.expected_level(rate), 1e-9)
        ratio = rate.count / expected
        if ratio < cfg.surge_ratio:
            return []
        rate.last_flag_ms = now
        severity = Severity.HIGH if ratio >= 4 * cfg.surge_ratio else Severity.MEDIUM
        return [
            self.finding(
                event,
                subject_type=SubjectType.ACCOUNT,
                subject_id=event.account_id,
                api_key_id=None,
                window_start_ms=bucket * cfg.bucket_s * 1000,
                score=1.0 - cfg.surge_ratio / (2.0 * ratio),
                severity=severity,
                summary=(
                    f"Account made {rate.count} calls in {cfg.bucket_s}s, {ratio:.1f}x its expected "
                    f"{expected:.1f}: abnormal use (7.1, 11.1(5))."
                ),
                evidence={
                    "bucket_count": rate.count,
                    "expected": round(expected, 3),
                    "ratio": round(ratio, 3),
                    "buckets_seen": rate.buckets_seen,
                    "event_ids": [event.event_id],
                },
            )
        ]
