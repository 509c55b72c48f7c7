"""Minor safety: prompts that sexualise or seek to exploit minors (clause 8.2.6).

A confident hit on one prompt is a critical finding on its own; prompts near the threshold are
remembered per account and escalate when they repeat. Findings carry a hash of the prompt, the
matched categories and, only where config allows, a masked excerpt — never the prompt itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from typing import Any
from weakref import WeakValueDictionary

from detectors.base import Detector, new_store
from detectors.minor_safety.model import MODEL_VERSION, load_model
from detectors.minor_safety.scoring import PromptScore, PromptScorer
from detectors.state import SubjectStore
from models.config import MinorSafetyConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent


@dataclass(slots=True)
class AccountNearHits:
    """Near-threshold prompts of one account: (event time, event id), at most ``near_hits_to_escalate``."""

    last_seen_ms: int
    near_hits: list[tuple[int, str]] = field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return {"last_seen_ms": self.last_seen_ms, "near_hits": [list(hit) for hit in self.near_hits]}

    @classmethod
    def load(cls, data: dict[str, Any]) -> AccountNearHits:
        return cls(data["last_seen_ms"], [(int(ts), str(event_id)) for ts, event_id in data["near_hits"]])


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def redact(text: str, keep: int = 24) -> str:
    """A short excerpt with every letter and digit masked, keeping only the shape for a reviewer."""
    masked = re.sub(r"\w", "•", text[:keep])
    return masked + ("…" if len(text) > keep else "")


_SCORERS: WeakValueDictionary[str, PromptScorer] = WeakValueDictionary()
_PROMPT = attrgetter("prompt")


def shared_scorer(config: MinorSafetyConfig) -> PromptScorer:
    """The scorer, and so the score cache, of every detector in this process with these settings.

    A worker runs one detector per partition it owns, and clients resend the same prompts whatever
    partition their account hashes to (templates, shared presets), while a score depends only on the
    prompt and the settings: one cache then scores a resent prompt once instead of once a partition
    (four partitions of the 139k-event benchmark replay: 8,540 prompts scored afresh, 2,417 with one cache).
    Held weakly, so a scorer goes with the last detector using it (after a reload that changed it).
    """
    key = config.model_dump_json()
    scorer = _SCORERS.get(key)
    if scorer is None:
        scorer = PromptScorer(config, load_model() if config.learned_model else None)
        _SCORERS[key] = scorer
    return scorer


class MinorSafetyDetector(Detector):
    """One clear hit is a critical finding; repeated near-threshold prompts from one account escalate."""

    name = "minor_safety"
    model_version = f"minor-lexicon-2+{MODEL_VERSION}"
    clauses = ("8.2.6",)

    def __init__(self, config: MinorSafetyConfig, state: StateConfig) -> None:
        self.config = config
        self.scorer = shared_scorer(config)
        # Only accounts with near-threshold prompts hold state: benign traffic costs no memory here.
        self.accounts: SubjectStore[AccountNearHits] = new_store(AccountNearHits, AccountNearHits.load, state)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"accounts": self.accounts}

    def prepare(self, events: list[TelemetryEvent]) -> None:
        """Every partition's prompts of the chunk scored at once, by the scorer every partition's detector shares."""
        self.scorer.prepare([prompt for prompt in map(_PROMPT, events) if prompt])

    def observe_batch(self, events: list[TelemetryEvent]) -> list[tuple[int, Finding]]:
        """Every prompt of the batch scored in one vectorised model call, then judged in turn."""
        prompts = list(map(_PROMPT, events))
        prompted = list(compress(range(len(events)), prompts))  # most events carry none: skipped in C
        scores = self.scorer.score_batch([prompts[index] for index in prompted])
        return [
            (index, finding)
            for index, score in zip(prompted, scores, strict=True)
            for finding in self._judge(events[index], score)
        ]

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        return [] if not event.prompt else self._judge(event, self.scorer.score(event.prompt))

    def _judge(self, event: TelemetryEvent, result: PromptScore) -> list[Finding]:
        cfg = self.config
        if result.score >= cfg.hit_threshold:
            return [self._finding(event, result, Severity.CRITICAL, "A prompt sexualises or targets a minor", [])]
        if result.score < cfg.near_threshold:
            return []
        now = event.ts_ms
        history = self.accounts.touch(event.account_id, now)
        history.last_seen_ms = max(history.last_seen_ms, now)
        horizon = now - cfg.near_window_s * 1000
        earlier = [hit for hit in history.near_hits if hit[0] >= horizon][-(cfg.near_hits_to_escalate - 1) :]
        history.near_hits = [*earlier, (now, event.event_id)]
        if len(history.near_hits) < cfg.near_hits_to_escalate:
            return []
        summary = f"{len(history.near_hits)} near-threshold prompts from one account suggest minors are targeted"
        finding = self._finding(event, result, Severity.HIGH, summary, earlier)
        history.near_hits.clear()
        return [finding]

    def _finding(
        self,
        event: TelemetryEvent,
        result: PromptScore,
        severity: Severity,
        summary: str,
        earlier: list[tuple[int, str]],
    ) -> Finding:
        assert event.prompt is not None
        evidence: dict[str, Any] = {
            "prompt_sha256": prompt_hash(event.prompt),
            "categories": list(result.categories),
            "lexicon_score": result.lexicon_score,
            "model_probability": result.model_probability,
            "prompts_in_window": len(earlier) + 1,
            "event_ids": [event_id for _, event_id in earlier] + [event.event_id],
            "preserve_evidence": True,
        }
        if self.config.redacted_excerpt:
            evidence["excerpt"] = redact(event.prompt)
        return self.finding(
            event,
            subject_type=SubjectType.ACCOUNT,
            subject_id=event.account_id,
            window_start_ms=earlier[0][0] if earlier else event.ts_ms,
            score=result.score,
            severity=severity,
            summary=f"{summary} ({', '.join(result.categories)}): endangering minors (8.2.6).",
            evidence=evidence,
        )
