"""Minor safety: prompts that sexualise or seek to exploit minors (clause 8.2.6).

A prompt scores high only when a minor indicator and sexual intent appear together; either
alone is the everyday language of parenting, paediatrics, education and adult content.
Findings carry a hash of the prompt and the matched categories, never the prompt itself.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Detector, new_store
from detectors.state import SubjectStore
from models.config import MinorSafetyConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
# Letters split by spaces or punctuation ("n u d e", "n.u.d.e") are joined back into a word.
_SPLIT_WORD = re.compile(r"\b(?:[a-z][\s.\-_*]){2,}[a-z]\b")
_SEPARATORS = re.compile(r"[\s.\-_*]")
_AGE = re.compile(r"\b(\d{1,2})\s*(?:-|\s)?\s*(?:years?|yrs?|yo|y/o)\b(?:\s*-?\s*old)?")
_GRADE = re.compile(r"\b(?:[1-9]|1[0-2])(?:st|nd|rd|th)\s*(?:-|\s)?\s*grade(?:r)?\b")

MINOR_TERMS = re.compile(
    r"\b(?:child|children|kid|kids|toddler|preteen|pre-teen|underage|minor|schoolgirl|schoolboy|"
    r"little (?:girl|boy)|young (?:girl|boy)|elementary school|middle school|loli|shota|"
    r"niña|niño|menor de edad|criança|menina|menino|enfant|fillette|kinder|mädchen|minderjährig)\b"
)
WEAK_MINOR_TERMS = re.compile(r"\b(?:teen|teens|teenager|girl|boy|student|minor|young)\b")
SEXUAL_TERMS = re.compile(
    r"\b(?:nude|nudes|nood|noods|naked|nekkid|sexy|sexual|sexualized|explicit|erotic|porn|porno|pornographic|undress|"
    r"undressed|undressing|topless|lingerie|seductive|nsfw|xxx|desnuda|desnudo|nue|nackt|sexo|sexe)\b"
)
_CJK_MINOR = ("儿童", "幼女", "女童", "未成年", "小学生", "中学生", "子供", "児童", "少女")
_CJK_SEXUAL = ("裸", "色情", "性感", "性的", "エロ", "ヌード")


def unmask_prompt(text: str) -> str:
    """Undo the disguises that keep digits meaningful: confusables (NFKC), zero-width characters, case,
    letters split by spaces or punctuation."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).lower()
    return _SPLIT_WORD.sub(lambda m: _SEPARATORS.sub("", m.group(0)), text)


def deleet(text: str) -> str:
    """Leetspeak back to letters, for word matching only: ages and grades are read before this."""
    return _SPLIT_WORD.sub(lambda m: _SEPARATORS.sub("", m.group(0)), text.translate(_LEET))


@dataclass(frozen=True, slots=True)
class PromptScore:
    score: float
    categories: tuple[str, ...]


def score_prompt(text: str) -> PromptScore:
    """0..1: a strong minor indicator with sexual intent is a clear hit; a weak one is near-threshold."""
    plain = unmask_prompt(text)
    normal = deleet(plain)
    categories: list[str] = []
    if any(int(m.group(1)) < 18 for m in _AGE.finditer(plain)):
        categories.append("stated_age_under_18")
    if _GRADE.search(plain):
        categories.append("grade_level")
    if MINOR_TERMS.search(normal) or any(term in normal for term in _CJK_MINOR):
        categories.append("child_term")
    weak_minor = bool(WEAK_MINOR_TERMS.search(normal))
    sexual = bool(SEXUAL_TERMS.search(normal)) or any(term in normal for term in _CJK_SEXUAL)
    if sexual:
        categories.append("sexual_intent")
    if sexual and len(categories) > 1:
        return PromptScore(0.95, tuple(categories))
    if sexual and weak_minor:
        return PromptScore(0.6, (*categories, "ambiguous_age_term"))
    return PromptScore(0.0, tuple(categories))


@dataclass(slots=True)
class AccountNearHits:
    last_seen_ms: int
    near_hits: list[int] = field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return {"last_seen_ms": self.last_seen_ms, "near_hits": list(self.near_hits)}

    @classmethod
    def load(cls, data: dict[str, Any]) -> AccountNearHits:
        return cls(data["last_seen_ms"], list(data["near_hits"]))


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class MinorSafetyDetector(Detector):
    """One clear hit is a critical finding; repeated near-threshold prompts from one account escalate."""

    name = "minor_safety"
    model_version = "minor-lexicon-0.1"
    clauses = ("8.2.6",)

    def __init__(self, config: MinorSafetyConfig, state: StateConfig) -> None:
        self.config = config
        # Only accounts with near-threshold prompts hold state: benign traffic costs no memory here.
        self.accounts: SubjectStore[AccountNearHits] = new_store(AccountNearHits, AccountNearHits.load, state)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"accounts": self.accounts}

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        if not event.prompt:
            return []
        cfg = self.config
        result = score_prompt(event.prompt)
        if result.score >= cfg.hit_threshold:
            return [self._finding(event, result, Severity.CRITICAL, "A prompt sexualises a minor", event.ts_ms, 1)]
        if result.score < cfg.near_threshold:
            return []
        now = event.ts_ms
        history = self.accounts.touch(event.account_id, now)
        history.last_seen_ms = max(history.last_seen_ms, now)
        horizon = now - cfg.near_window_s * 1000
        history.near_hits = [t for t in history.near_hits if t >= horizon][-cfg.near_hits_to_escalate :]
        history.near_hits.append(now)
        if len(history.near_hits) < cfg.near_hits_to_escalate:
            return []
        start = history.near_hits[0]
        count = len(history.near_hits)
        history.near_hits.clear()
        summary = f"{count} near-threshold prompts suggest sexual content about minors"
        return [self._finding(event, result, Severity.HIGH, summary, start, count)]

    def _finding(
        self, event: TelemetryEvent, result: PromptScore, severity: Severity, summary: str, start_ms: int, count: int
    ) -> Finding:
        assert event.prompt is not None
        evidence: dict[str, Any] = {
            "prompt_sha256": prompt_hash(event.prompt),
            "categories": list(result.categories),
            "prompts_in_window": count,
            "event_ids": [event.event_id],
            "preserve_evidence": True,
        }
        if self.config.redacted_excerpt:
            evidence["excerpt"] = redact(event.prompt)
        return self.finding(
            event,
            subject_type=SubjectType.ACCOUNT,
            subject_id=event.account_id,
            window_start_ms=start_ms,
            score=result.score,
            severity=severity,
            summary=f"{summary} ({', '.join(result.categories)}): endangering minors (8.2.6).",
            evidence=evidence,
        )


def redact(text: str, keep: int = 24) -> str:
    """A short excerpt with every letter and digit masked, keeping only the shape for a reviewer."""
    masked = re.sub(r"\w", "•", text[:keep])
    return masked + ("…" if len(text) > keep else "")
