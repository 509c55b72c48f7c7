"""Scores a prompt 0..1 from the lexicon and the learned model together.

The lexicon alone decides a clear hit: a strong minor indicator together with strong sexual or
exploitative intent, where a false accusation is grave. The model reads the phrasing the lexicon has
no word for, on prompts where the lexicon sees at least one of the two signals; its probability is
weighted by ``model_weight`` (below the hit threshold), so a learned score can make a prompt
near-threshold, which escalates only when an account repeats it, but never suspends an account by
itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b

from detectors.minor_safety.lexicon import (
    ADULT_ASSERTION,
    AGE_PATTERNS,
    CATEGORIES,
    DEPICTION,
    PROTECTIVE_CONTEXT,
    WORD_AGE,
    Signal,
)
from detectors.minor_safety.model import PromptModel, model_input
from detectors.minor_safety.normalise import PromptForms, prompt_forms
from detectors.minor_safety.pcre import CompiledPattern, CompiledPatternSet
from models.config import MinorSafetyConfig

CLEAR_HIT = 0.95
"""Lexicon score of a strong minor indicator with strong intent."""
ONE_SIDE_WEAK = 0.65
"""Lexicon score when one of the two signals is only weak ("teen", "sex"): near-threshold."""
BOTH_WEAK = 0.35
"""Lexicon score when both are weak: recorded, below the near threshold."""
EXCUSED = 0.2
"""Ceiling when a protective context (policy, medicine, prevention) explains the terms and nothing is depicted."""


@dataclass(frozen=True, slots=True)
class LexiconMatch:
    score: float
    categories: tuple[str, ...]
    minor: bool
    intent: bool


@dataclass(frozen=True, slots=True)
class PromptScore:
    score: float
    categories: tuple[str, ...]
    lexicon_score: float
    model_probability: float


_AGES = CompiledPatternSet([WORD_AGE, *AGE_PATTERNS])
"""Bit 0: an age in words, which is under 18 by the pattern itself; the others read the age from digits."""
_CATEGORIES = CompiledPatternSet([category.pattern for category in CATEGORIES])
_ADULT_ASSERTION = CompiledPattern(ADULT_ASSERTION)
_PROTECTIVE_CONTEXT = CompiledPattern(PROTECTIVE_CONTEXT)
_DEPICTION = CompiledPattern(DEPICTION)


_NOTHING = LexiconMatch(0.0, (), False, False)
"""What most prompts are to the lexicon; shared, as are their scores."""
_UNMARKED = PromptScore(0.0, (), 0.0, 0.0)


def _stated_minor_age(plain: str) -> bool:
    stated = _AGES.matching(plain)
    if stated & 1 or not stated:
        return bool(stated)
    # The ages themselves are read by re, only from the patterns that match.
    ages = (
        int(match.group(1))
        for index, pattern in enumerate(AGE_PATTERNS, start=1)
        if stated >> index & 1
        for match in pattern.finditer(plain)
    )
    return any(0 < age < 18 for age in ages)


def lexicon_match(prompt: PromptForms) -> LexiconMatch:
    """The lexicon's reading of one prompt, with the categories that matched (names, never the words)."""
    plain, forms = prompt.plain, prompt.joined
    matched = _CATEGORIES.matching(forms)
    stated_age = _stated_minor_age(plain)
    if not matched and not stated_age:  # most prompts
        return _NOTHING
    found: dict[str, tuple[Signal, bool]] = {}
    if stated_age:
        found["stated_age_under_18"] = (Signal.MINOR, True)
    for index, category in enumerate(CATEGORIES):
        if matched >> index & 1:
            signal, strong = found.get(category.name, (category.signal, False))
            found[category.name] = (signal, strong or category.strong)
    adult = "teen_term" in found and _ADULT_ASSERTION.search(forms)
    if adult:
        # "teen" beside a stated adult is an adult's youth; strong indicators stand regardless.
        found.pop("teen_term", None)
    minor = [strong for signal, strong in found.values() if signal is Signal.MINOR]
    intent = [strong for signal, strong in found.values() if signal is Signal.INTENT]
    categories = sorted(found)
    if adult:
        categories.append("adult_stated")
    if not minor or not intent:
        score = 0.0
    elif any(minor) and any(intent):
        score = CLEAR_HIT
    elif any(minor) or any(intent):
        score = ONE_SIDE_WEAK
    else:
        score = BOTH_WEAK
    if score > EXCUSED and _PROTECTIVE_CONTEXT.search(forms) and not _DEPICTION.search(forms):
        score = EXCUSED
        categories.append("protective_context")
    return LexiconMatch(score, tuple(categories), bool(minor), bool(intent))


def _digest(prompt: str) -> bytes:
    return blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class PromptScorer:
    """Lexicon plus the learned model, over a batch of prompts in one vectorised model call.

    A prompt's score depends on its text alone, and clients resend the same prompts (retries,
    templates, shared presets), so scores are remembered for the last ``score_cache_size`` distinct
    prompts: a repeat costs a hash and a lookup instead of normalisation and matching. The cache is
    keyed by a 128-bit digest, so a long prompt costs it 16 bytes, not its length.
    """

    def __init__(self, config: MinorSafetyConfig, model: PromptModel | None) -> None:
        self.config = config
        self.model = model
        self._cache: OrderedDict[bytes, PromptScore] = OrderedDict()
        self._prepared: dict[bytes, PromptScore] = {}
        self._digests: dict[str, bytes] = {}
        self.cache_hits = 0

    def prepare(self, prompts: Sequence[str]) -> None:
        """Score ahead, in one model call, the prompts not cached that the next ``score_batch`` calls will ask
        for (a chunk's, of every partition): the model's fixed cost (~1 ms a call) is paid once, not once for
        each partition whose share holds a prompt it weighs. Replaces what the previous call prepared."""
        cache = self._cache
        # Kept for score_batch, whose prompts are these same strings: a lookup (their hash is cached) for a digest.
        self._digests = {prompt: _digest(prompt) for prompt in prompts}
        fresh = {digest: prompt for prompt, digest in self._digests.items() if digest not in cache}
        self._prepared = dict(zip(fresh, self._score_fresh(list(fresh.values())), strict=True))

    def score_batch(self, prompts: Sequence[str]) -> list[PromptScore]:
        cache, prepared, known = self._cache, self._prepared, self._digests
        digests = [known.get(prompt) or _digest(prompt) for prompt in prompts]
        fresh = {
            digest: prompt
            for digest, prompt in zip(digests, prompts, strict=True)
            if digest not in cache and digest not in prepared
        }
        scored = dict(zip(fresh, self._score_fresh(list(fresh.values())), strict=True))
        results = []
        for digest in digests:
            result = scored.get(digest)
            if result is None:
                result = cache.get(digest)
                if result is None:  # scored by prepare: fresh to the cache, as if scored here
                    result = scored[digest] = prepared[digest]
                else:
                    cache.move_to_end(digest)
                    self.cache_hits += 1
            results.append(result)
        if self.config.score_cache_size:
            cache.update(scored)
            while len(cache) > self.config.score_cache_size:
                cache.popitem(last=False)
        return results

    def _score_fresh(self, prompts: list[str]) -> list[PromptScore]:
        forms = [prompt_forms(prompt) for prompt in prompts]
        matches = [lexicon_match(form) for form in forms]
        scores = [_UNMARKED if m is _NOTHING else PromptScore(m.score, m.categories, m.score, 0.0) for m in matches]
        # The model weighs in only where the lexicon sees a minor or an intent: most prompts show
        # neither, and a learned score with nothing the lexicon recognises is too weak to act on.
        weighed = [i for i, match in enumerate(matches) if match.minor or match.intent]
        if self.model is None or not weighed:
            return scores
        learned = self.model.probabilities_of_inputs([model_input(forms[i].words) for i in weighed])
        for i, probability in zip(weighed, learned, strict=True):
            scores[i] = self._combine(matches[i], float(probability))
        return scores

    def score(self, prompt: str) -> PromptScore:
        return self.score_batch([prompt])[0]

    def _combine(self, match: LexiconMatch, probability: float) -> PromptScore:
        learned = probability * self.config.model_weight
        score = max(match.score, learned)
        categories = match.categories
        if learned > match.score and learned >= self.config.near_threshold:
            categories = (*categories, "learned_model")
        return PromptScore(round(score, 4), categories, match.score, round(probability, 4))
