"""Key and account sharing: one API key used from many networks at once (clauses 3.8, 10.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.base import Detector, cooling_down, new_store
from detectors.networks import network_of
from detectors.state import SubjectStore
from models.config import KeySharingConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent


@dataclass(slots=True)
class KeyNetworks:
    last_seen_ms: int
    networks: dict[str, int] = field(default_factory=dict)  # network → last use (ms)
    last_flag_ms: int | None = None

    def dump(self) -> dict[str, Any]:
        return {"last_seen_ms": self.last_seen_ms, "networks": dict(self.networks), "last_flag_ms": self.last_flag_ms}

    @classmethod
    def load(cls, data: dict[str, Any]) -> KeyNetworks:
        return cls(data["last_seen_ms"], dict(data["networks"]), data["last_flag_ms"])


class KeySharingDetector(Detector):
    """Counts distinct networks per key in a sliding event-time window."""

    name = "key_sharing"
    model_version = "key-networks-0.1"
    clauses = ("3.8", "10.3")

    def __init__(self, config: KeySharingConfig, state: StateConfig) -> None:
        self.config = config
        self.keys: SubjectStore[KeyNetworks] = new_store(KeyNetworks, KeyNetworks.load, state)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"keys": self.keys}

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        cfg = self.config
        now = event.ts_ms
        key = self.keys.touch(event.api_key_id, now)
        key.last_seen_ms = max(key.last_seen_ms, now)
        network = network_of(event.ip)
        is_new = network not in key.networks
        key.networks[network] = max(now, key.networks.get(network, now))
        if not is_new:
            return []
        horizon = now - cfg.window_s * 1000
        stale = [n for n, seen in key.networks.items() if seen < horizon]
        for n in stale:
            del key.networks[n]
        if len(key.networks) > cfg.max_tracked_networks:
            oldest = min(key.networks, key=lambda n: (key.networks[n], n))
            del key.networks[oldest]
        distinct = len(key.networks)
        if distinct <= cfg.max_networks or cooling_down(key.last_flag_ms, now, cfg.cooldown_s):
            return []
        key.last_flag_ms = now
        severity = Severity.HIGH if distinct >= 2 * cfg.max_networks else Severity.MEDIUM
        return [
            self.finding(
                event,
                subject_type=SubjectType.API_KEY,
                subject_id=event.api_key_id,
                window_start_ms=min(key.networks.values()),
                score=1.0 - cfg.max_networks / (2.0 * distinct),
                severity=severity,
                summary=(
                    f"API key used from {distinct} distinct networks within {cfg.window_s}s: "
                    "key disclosed or shared (3.8, 10.3)."
                ),
                evidence={
                    "distinct_networks": distinct,
                    "max_networks": cfg.max_networks,
                    "networks": sorted(key.networks)[:10],
                    "event_ids": [event.event_id],
                },
            )
        ]
