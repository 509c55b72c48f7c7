"""Crawlers and scrapers (clause 8.2.1): machine timing, id enumeration, read-only mixes, 404s, agents.

Each API key's recent calls are kept in a bounded event-time window and scored on weighted
signals. User agents are classified with the maintained ``crawler-user-agents`` list: headless
browsers and scraping frameworks are a signal, plain HTTP libraries (python-requests, curl, Go,
node-fetch, which the list also names) are not, since ordinary SDK clients use them.
"""

from __future__ import annotations

import math
import re
import sys
from bisect import bisect_left
from functools import cache, lru_cache
from hashlib import blake2b
from operator import mul, sub
from typing import Any

import crawleruseragents

from detectors.base import SteppedDetector, cooling_down, new_store
from detectors.native import CrawlerWindow, KeyActivity
from detectors.state import SubjectStore
from models.config import CrawlerConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent

# A number ending an id after a separator (``vid_1041``, ``1041``); opaque tokens never match.
_TRAILING_NUMBER = re.compile(r"(?:^|[^A-Za-z0-9])(\d+)$")
_LIBRARY_TAG = "http-library"
# Distinct user agents a detector remembers the digest and class of; a busy stream shows a few dozen.
_AGENT_CACHE_SIZE = 4096


@cache
def _crawler_patterns() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """The list's patterns, compiled once: ``matching_crawlers`` searches them all by pattern string,
    which recompiles every one of them per user agent (there are more than ``re``'s cache holds)."""
    return [(re.compile(str(entry["pattern"])), entry) for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]


@lru_cache(maxsize=4096)
def agent_class(user_agent: str, automation_words: tuple[str, ...]) -> str | None:
    """``automation``, ``http_library`` or ``None`` (a browser, an SDK of our own, unknown)."""
    if not crawleruseragents.is_crawler(user_agent):  # the same gate as ``matching_crawlers``
        return None
    matches = [entry for pattern, entry in _crawler_patterns() if pattern.search(user_agent)]
    if not matches:
        return None
    for entry in matches:
        description = str(entry.get("description", "")).lower()
        if set(entry.get("tags", [])) - {_LIBRARY_TAG} or any(word in description for word in automation_words):
            return "automation"
    return "http_library"


def _agent_digest(user_agent: str | None) -> int:
    """A user agent as the window keeps it: its 6-byte BLAKE2b digest (12 hex digits in a dump)."""
    return int.from_bytes(blake2b((user_agent or "").encode("utf-8"), digest_size=6).digest(), "big")


_NUMBERED_ID_LIMIT = 1 << 63
"""Ids numbered past 64-bit integers are no sequence of ours (and would not fit a state record): opaque tokens."""


def numbered_read(resource_id: str) -> int | None:
    """The number a read id ends in, if any. The crawler window's step reads ASCII ids itself (the same reading,
    compiled: ``native.ascii_trailing_number``) and asks this for the others, whose digits may be any script's."""
    match = _TRAILING_NUMBER.search(resource_id)
    if match and (value := int(match.group(1))) < _NUMBERED_ID_LIMIT:
        return value
    return None


def content_features(activity: KeyActivity, config: CrawlerConfig) -> dict[str, float]:
    """What a key's window asks for and gets: counts over the window's flags."""
    calls, generating, not_found, forward, numbered, agents, automation = activity.content_counts()
    steps = numbered - 1
    return {
        "requests": float(calls),
        "generation_share": generating / calls if calls else 0.0,
        "not_found_share": not_found / calls if calls else 0.0,
        "forward_step_share": forward / steps if steps >= 2 else 0.0,
        "numbered_reads": float(numbered),
        "user_agents": float(agents),
        "automation_agent": float(automation),
    }


def _sqrt_of_ratio(numerator: int, denominator: int) -> float:
    """sqrt(numerator / denominator) correctly rounded, as ``statistics.pstdev`` rounds it (its round-to-odd
    integer square root, https://bugs.python.org/msg407078), without building Fractions."""
    shift = (numerator.bit_length() - denominator.bit_length() - _SQRT_BIT_WIDTH) // 2
    if shift >= 0:
        return float(_isqrt_round_to_odd(numerator, denominator << 2 * shift) << shift)
    return _isqrt_round_to_odd(numerator << -2 * shift, denominator) / (1 << -shift)


def _isqrt_round_to_odd(numerator: int, denominator: int) -> int:
    root = math.isqrt(numerator // denominator)
    return root | (root * root * denominator != numerator)


_SQRT_BIT_WIDTH = 2 * sys.float_info.mant_dig + 3


def timing_features(activity: KeyActivity, config: CrawlerConfig) -> dict[str, float]:
    """How machine-like the gaps between calls are: the dearer half of the features."""
    times = activity.times
    count = len(times) - 1
    if count < 1:
        return dict(_NO_TIMING)
    gaps = sorted(map(sub, times[1:], times[:-1]))
    total = times[-1] - times[0]
    mean_gap = float(total) / count  # statistics.fmean: the exact sum as a float, over the count
    # statistics.pstdev: the exact population variance (n·Σg² − (Σg)²) / n², its square root correctly rounded
    spread = _sqrt_of_ratio(count * sum(map(mul, gaps, gaps)) - total * total, count * count)
    middle = count // 2
    median_gap = gaps[middle] if count % 2 else (gaps[middle - 1] + gaps[middle]) / 2
    periodic_share = 0.0
    if median_gap > 0:
        # The gaps with abs(gap - median) <= tolerance are a run of the sorted gaps: find its two ends.
        tolerance = config.periodic_tolerance * median_gap
        first = bisect_left(gaps, True, key=lambda gap: median_gap - gap <= tolerance)
        end = bisect_left(gaps, True, key=lambda gap: gap - median_gap > tolerance)
        periodic_share = (end - first) / count
    return {"gap_cv": spread / mean_gap if mean_gap > 0 else 1.0, "periodic_share": periodic_share}


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


class CrawlerDetector(SteppedDetector):
    """Scores each API key's recent window on weighted signals; flags when the sum reaches ``flag_score``."""

    name = "crawler"
    model_version = "crawler-rules-1.0"
    clauses = ("8.2.1",)

    def __init__(self, config: CrawlerConfig, state: StateConfig) -> None:
        self.config = config
        self.keys: SubjectStore[KeyActivity] = new_store(KeyActivity, KeyActivity.load, state)
        self._automation_words = tuple(word.lower() for word in config.automation_description_words)
        self._agents: dict[str | None, tuple[int, bool]] = {}
        self.window = CrawlerWindow(
            window_ms=config.window_s * 1000,
            max_events=config.max_window_events,
            max_id_step=config.max_id_step,
            min_requests=config.min_requests,
            evaluate_every=config.evaluate_every,
        )

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"keys": self.keys}

    def _agent(self, user_agent: str | None) -> tuple[int, bool]:
        """The digest of a user agent and whether it is automation, worked out once per distinct agent (the
        window's step finds the agents it has seen in ``_agents``)."""
        if len(self._agents) >= _AGENT_CACHE_SIZE:
            self._agents.clear()
        automation = bool(user_agent) and agent_class(user_agent or "", self._automation_words) == "automation"
        known = self._agents[user_agent] = (_agent_digest(user_agent), automation)
        return known

    def step(self, events: list[TelemetryEvent], start: int) -> tuple[int, KeyActivity] | None:
        return self.window.step(self.keys, events, start, self._agents, self._agent, numbered_read)

    def record(self, event: TelemetryEvent) -> KeyActivity | None:
        """Add the event to its key's window; returns the window when it is due to be scored."""
        stopped = self.step([event], 0)
        return None if stopped is None else stopped[1]

    def judge(self, event: TelemetryEvent, activity: KeyActivity) -> list[Finding]:
        cfg = self.config
        if cooling_down(activity.last_flag_ms, event.ts_ms, cfg.cooldown_s):
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
                window_start_ms=activity.time_base_ms + activity.times[0],
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
