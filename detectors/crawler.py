"""Crawlers and scrapers: machine timing, id enumeration, read-only mixes, automation agents (8.2.1)."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from detectors.base import Detector, cooling_down, new_store
from detectors.state import SubjectStore
from models.config import CrawlerConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent

_TRAILING_NUMBER = re.compile(r"(\d+)$")
# Calls that make something; a key that never makes anything and only reads is a scraper's shape.
_GENERATING_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(slots=True)
class KeyActivity:
    """A bounded window of one key's recent calls, as parallel lists (cheap to dump and trim)."""

    last_seen_ms: int
    times: list[int] = field(default_factory=list)
    generating: list[bool] = field(default_factory=list)
    not_found: list[bool] = field(default_factory=list)
    resource_numbers: list[int] = field(default_factory=list)
    automation_agent: bool = False
    events_since_score: int = 0
    last_flag_ms: int | None = None

    def dump(self) -> dict[str, Any]:
        return {
            "last_seen_ms": self.last_seen_ms,
            "times": list(self.times),
            "generating": list(self.generating),
            "not_found": list(self.not_found),
            "resource_numbers": list(self.resource_numbers),
            "automation_agent": self.automation_agent,
            "events_since_score": self.events_since_score,
            "last_flag_ms": self.last_flag_ms,
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> KeyActivity:
        return cls(**data)

    def trim(self, horizon_ms: int, max_events: int) -> None:
        drop = 0
        while drop < len(self.times) and self.times[drop] < horizon_ms:
            drop += 1
        drop = max(drop, len(self.times) - max_events)
        if drop > 0:
            del self.times[:drop], self.generating[:drop], self.not_found[:drop]
        if len(self.resource_numbers) > max_events:
            del self.resource_numbers[: len(self.resource_numbers) - max_events]


class CrawlerDetector(Detector):
    """Scores each API key's recent window on weighted signals; flags when the sum reaches ``flag_score``."""

    name = "crawler"
    model_version = "crawler-rules-0.1"
    clauses = ("8.2.1",)

    def __init__(self, config: CrawlerConfig, state: StateConfig) -> None:
        self.config = config
        self.keys: SubjectStore[KeyActivity] = new_store(KeyActivity, KeyActivity.load, state)
        self._agent_patterns = tuple(p.lower() for p in config.automation_user_agents)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"keys": self.keys}

    def is_automation_agent(self, user_agent: str | None) -> bool:
        if not user_agent:
            return False
        lowered = user_agent.lower()
        return any(pattern in lowered for pattern in self._agent_patterns)

    def signals(self, activity: KeyActivity) -> dict[str, float]:
        """The fired signals and their measured values."""
        cfg = self.config
        fired: dict[str, float] = {}
        if activity.automation_agent:
            fired["automation_user_agent"] = 1.0
        gaps = [b - a for a, b in pairwise(activity.times)]
        mean_gap = statistics.fmean(gaps) if gaps else 0.0
        if mean_gap > 0:
            cv = statistics.pstdev(gaps) / mean_gap
            if cv < cfg.regular_gap_cv:
                fired["regular_timing"] = round(cv, 4)
        if not any(activity.generating):
            fired["read_only"] = 1.0
        numbers = activity.resource_numbers
        if len(numbers) >= 3:
            steps = sum(1 for a, b in pairwise(numbers) if abs(b - a) == 1)
            share = steps / (len(numbers) - 1)
            if share >= cfg.sequential_ratio:
                fired["sequential_ids"] = round(share, 4)
        missing = sum(activity.not_found) / len(activity.not_found)
        if missing >= cfg.not_found_ratio:
            fired["not_found"] = round(missing, 4)
        return fired

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        cfg = self.config
        now = event.ts_ms
        activity = self.keys.touch(event.api_key_id, now)
        activity.last_seen_ms = max(activity.last_seen_ms, now)
        if not activity.times:
            activity.automation_agent = self.is_automation_agent(event.user_agent)
        elif not activity.automation_agent and self.is_automation_agent(event.user_agent):
            activity.automation_agent = True
        activity.times.append(now)
        activity.generating.append(event.method.upper() in _GENERATING_METHODS)
        activity.not_found.append(event.status == 404)
        if event.resource_id and event.method.upper() == "GET":
            match = _TRAILING_NUMBER.search(event.resource_id)
            if match:
                activity.resource_numbers.append(int(match.group(1)))
        activity.trim(now - cfg.window_s * 1000, cfg.max_window_events)
        activity.events_since_score += 1
        if (
            len(activity.times) < cfg.min_requests
            or activity.events_since_score < cfg.evaluate_every
            or cooling_down(activity.last_flag_ms, now, cfg.cooldown_s)
        ):
            return []
        activity.events_since_score = 0
        fired = self.signals(activity)
        score = sum(cfg.signal_weights.get(signal, 0.0) for signal in fired)
        if score < cfg.flag_score:
            return []
        activity.last_flag_ms = now
        severity = Severity.HIGH if score >= 2 * cfg.flag_score else Severity.MEDIUM
        return [
            self.finding(
                event,
                subject_type=SubjectType.API_KEY,
                subject_id=event.api_key_id,
                window_start_ms=activity.times[0],
                score=min(1.0, score),
                severity=severity,
                summary=(
                    f"API key shows crawler behaviour over {len(activity.times)} calls "
                    f"({', '.join(sorted(fired))}): automated scraping (8.2.1)."
                ),
                evidence={"signals": fired, "requests": len(activity.times), "event_ids": [event.event_id]},
            )
        ]
