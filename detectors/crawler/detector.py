"""Crawlers and scrapers (clause 8.2.1): machine timing, id enumeration, read-only mixes, 404s, agents.

Each API key's recent calls are kept in a bounded event-time window and scored on weighted
signals. User agents are classified with the maintained ``crawler-user-agents`` list: headless
browsers and scraping frameworks are a signal, plain HTTP libraries (python-requests, curl, Go,
node-fetch, which the list also names) are not, since ordinary SDK clients use them.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
from itertools import pairwise
from typing import Any

import crawleruseragents

from detectors.base import Detector, cooling_down, new_store
from detectors.state import SubjectStore
from models.config import CrawlerConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent

# A number ending an id after a separator (``vid_1041``, ``1041``); opaque tokens never match.
_TRAILING_NUMBER = re.compile(r"(?:^|[^A-Za-z0-9])(\d+)$")
# Calls that make something; a key that never makes anything and only reads is a scraper's shape.
_GENERATING_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LIBRARY_TAG = "http-library"


@lru_cache(maxsize=4096)
def agent_class(user_agent: str, automation_words: tuple[str, ...]) -> str | None:
    """``automation``, ``http_library`` or ``None`` (a browser, an SDK of our own, unknown)."""
    matches = [crawleruseragents.CRAWLER_USER_AGENTS_DATA[i] for i in crawleruseragents.matching_crawlers(user_agent)]
    if not matches:
        return None
    for entry in matches:
        description = str(entry.get("description", "")).lower()
        if set(entry.get("tags", [])) - {_LIBRARY_TAG} or any(word in description for word in automation_words):
            return "automation"
    return "http_library"


def _agent_digest(user_agent: str | None) -> str:
    return blake2b((user_agent or "").encode("utf-8"), digest_size=6).hexdigest()


@dataclass(slots=True)
class KeyActivity:
    """A bounded window of one key's recent calls, as parallel lists (cheap to dump and trim)."""

    last_seen_ms: int
    times: list[int] = field(default_factory=list)
    generating: list[bool] = field(default_factory=list)
    not_found: list[bool] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)  # digests of the user agent of each call
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
            "agents": list(self.agents),
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
            del self.times[:drop], self.generating[:drop], self.not_found[:drop], self.agents[:drop]
        if len(self.resource_numbers) > max_events:
            del self.resource_numbers[: len(self.resource_numbers) - max_events]


def content_features(activity: KeyActivity, config: CrawlerConfig) -> dict[str, float]:
    """What a key's window asks for and gets: cheap sums over the window."""
    numbers = activity.resource_numbers
    steps = [b - a for a, b in pairwise(numbers)]
    calls = len(activity.times)
    return {
        "requests": float(calls),
        "generation_share": sum(activity.generating) / calls if calls else 0.0,
        "not_found_share": sum(activity.not_found) / calls if calls else 0.0,
        "forward_step_share": sum(0 < s <= config.max_id_step for s in steps) / len(steps) if len(steps) >= 2 else 0.0,
        "numbered_reads": float(len(numbers)),
        "user_agents": float(len(set(activity.agents))),
        "automation_agent": float(activity.automation_agent),
    }


def timing_features(activity: KeyActivity, config: CrawlerConfig) -> dict[str, float]:
    """How machine-like the gaps between calls are: the dearer half of the features."""
    gaps = [b - a for a, b in pairwise(activity.times)]
    mean_gap = statistics.fmean(gaps) if gaps else 0.0
    median_gap = statistics.median(gaps) if gaps else 0.0
    tolerance = config.periodic_tolerance * median_gap
    return {
        "gap_cv": statistics.pstdev(gaps) / mean_gap if mean_gap > 0 else 1.0,
        "periodic_share": sum(abs(g - median_gap) <= tolerance for g in gaps) / len(gaps) if median_gap > 0 else 0.0,
    }


_NO_TIMING = {"gap_cv": 1.0, "periodic_share": 0.0}
_TIMING_SIGNALS = ("regular_timing", "periodic")


def window_features(activity: KeyActivity, config: CrawlerConfig) -> dict[str, float]:
    """The measured shape of a key's window, the inputs of the rules (and of train.py's models)."""
    return {**content_features(activity, config), **timing_features(activity, config)}


def rule_signals(features: dict[str, float], config: CrawlerConfig) -> dict[str, float]:
    """The fired signals and their measured values."""
    fired: dict[str, float] = {}
    if features["automation_agent"]:
        fired["automation_user_agent"] = 1.0
    if features["gap_cv"] < config.regular_gap_cv:
        fired["regular_timing"] = round(features["gap_cv"], 4)
    if features["periodic_share"] >= config.periodic_share:
        fired["periodic"] = round(features["periodic_share"], 4)
    if 1 - features["generation_share"] >= config.read_ratio:
        fired["read_only"] = 1.0
    if features["numbered_reads"] >= 3 and features["forward_step_share"] >= config.sequential_ratio:
        fired["enumeration"] = round(features["forward_step_share"], 4)
    if features["not_found_share"] >= config.not_found_ratio:
        fired["not_found"] = round(features["not_found_share"], 4)
    if features["user_agents"] > config.max_user_agents:
        fired["rotating_user_agents"] = features["user_agents"]
    return fired


class CrawlerDetector(Detector):
    """Scores each API key's recent window on weighted signals; flags when the sum reaches ``flag_score``."""

    name = "crawler"
    model_version = "crawler-rules-1.0"
    clauses = ("8.2.1",)

    def __init__(self, config: CrawlerConfig, state: StateConfig) -> None:
        self.config = config
        self.keys: SubjectStore[KeyActivity] = new_store(KeyActivity, KeyActivity.load, state)
        self._automation_words = tuple(word.lower() for word in config.automation_description_words)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"keys": self.keys}

    def is_automation_agent(self, user_agent: str | None) -> bool:
        return bool(user_agent) and agent_class(user_agent or "", self._automation_words) == "automation"

    def record(self, event: TelemetryEvent) -> KeyActivity | None:
        """Add the event to its key's window; returns the window when it is due to be scored."""
        cfg = self.config
        now = event.ts_ms
        activity = self.keys.touch(f"{event.account_id}/{event.api_key_id}", now)
        activity.last_seen_ms = max(activity.last_seen_ms, now)
        if not activity.automation_agent and self.is_automation_agent(event.user_agent):
            activity.automation_agent = True
        activity.times.append(now)
        activity.generating.append(event.method.upper() in _GENERATING_METHODS)
        activity.not_found.append(event.status == 404)
        activity.agents.append(_agent_digest(event.user_agent))
        if event.resource_id and event.method.upper() == "GET":
            match = _TRAILING_NUMBER.search(event.resource_id)
            if match:
                activity.resource_numbers.append(int(match.group(1)))
        activity.trim(now - cfg.window_s * 1000, cfg.max_window_events)
        activity.events_since_score += 1
        if len(activity.times) < cfg.min_requests or activity.events_since_score < cfg.evaluate_every:
            return None
        activity.events_since_score = 0
        return activity

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        cfg = self.config
        activity = self.record(event)
        if activity is None or cooling_down(activity.last_flag_ms, event.ts_ms, cfg.cooldown_s):
            return []
        content = content_features(activity, cfg)
        best_case = sum(cfg.signal_weights.get(signal, 0.0) for signal in rule_signals({**content, **_NO_TIMING}, cfg))
        if best_case + sum(cfg.signal_weights.get(signal, 0.0) for signal in _TIMING_SIGNALS) < cfg.flag_score:
            return []  # even perfectly machine-like timing could not flag it: skip the dear timing statistics
        features = {**content, **timing_features(activity, cfg)}
        fired = rule_signals(features, cfg)
        score = sum(cfg.signal_weights.get(signal, 0.0) for signal in fired)
        if score < cfg.flag_score:
            return []
        activity.last_flag_ms = event.ts_ms
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
                evidence={
                    "signals": fired,
                    "features": {name: round(value, 4) for name, value in features.items()},
                    "requests": len(activity.times),
                    "event_ids": [event.event_id],
                },
            )
        ]
