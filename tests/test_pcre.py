"""Python patterns run by PCRE2 (``detectors/minor_safety/pcre.py``): every answer is ``re``'s.

Each construct the translation writes is held against ``re`` on generated text, with Unicode classes, lone
surrogates and the normaliser's substitutions among it; what it cannot carry over exactly must be refused.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import native
from detectors.minor_safety import normalise
from detectors.minor_safety.pcre import CompiledPattern, CompiledPatternSet, pcre_source, prefilter_source

CONSTRUCTS = [
    r"(?<!\w)ab(?!\w)",
    r"\bab\b",
    r"^ab",
    r"ab$",
    r"\Aab\Z",
    r"a.b",
    r"[^\W_]+",
    r"[^\w\x00]{1,3}",
    r"\d{2}",
    r"[\s.]+x",
    r"(a|b)\1",
    r"(\w)\1{2,}",
    r"a+?b",
    r"a*+a",
    r"(?>a|ab)c",
    r"(?<=a)b",
    r"(?<!a.)b(?!.c)",
    r"[^a]",
    r"[é-ü]",
    r"小学|学生",
    r"a{2,3}",
    r"(?:ab){0,}c",
    r"\Ⅻ|٣",
]
PATTERNS = [re.compile(source) for source in CONSTRUCTS]
COMPILED = [CompiledPattern(pattern) for pattern in PATTERNS]
PATTERN_SET = CompiledPatternSet(PATTERNS)

TEXT = st.text(
    alphabet=st.sampled_from("ab c_x.-\x00\n0123456789éüÉ٣Ⅻ小学生\u3000\u200b\ud800") | st.characters(), max_size=24
)


@settings(max_examples=2000, deadline=None)
@given(TEXT)
def test_every_construct_searches_as_re_does(text: str) -> None:
    for pattern, compiled in zip(PATTERNS, COMPILED, strict=True):
        assert compiled.search(text) == (pattern.search(text) is not None), (pattern.pattern, text)


@settings(max_examples=2000, deadline=None)
@given(TEXT, st.integers(min_value=0, max_value=(1 << len(PATTERNS)) - 1))
def test_a_set_answers_for_each_of_its_patterns_as_re_does(text: str, among: int) -> None:
    expected = sum(1 << i for i, pattern in enumerate(PATTERNS) if among >> i & 1 and pattern.search(text))
    assert PATTERN_SET.matching(text, among) == expected


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab12 .-_*,'~/\\·•\t9é小\ud800"), max_size=30) | st.text(max_size=30))
def test_the_normaliser_joins_split_words_as_re_would(text: str) -> None:
    separators = normalise._SEPARATORS
    for outer in (normalise._SPLIT_WORD, normalise._SPLIT_NUMBER):
        expected = outer.pattern.sub(lambda found: separators.pattern.sub("", found.group(0)), text)
        assert outer.delete_within(text, separators) == expected, (outer.pattern.pattern, text)
    for single in (normalise._LEET_CHARACTER, normalise._STRETCHED):
        assert single.search(text) == (single.pattern.search(text) is not None)


def test_a_lone_surrogate_is_answered_by_re() -> None:
    """PCRE2 reads UTF-8, which cannot hold one; ``re`` can."""
    compiled = CompiledPattern(re.compile(r"(?<!\w)ab"))
    assert compiled.search("\ud800ab") is True
    assert CompiledPatternSet([re.compile("b"), re.compile("c")]).matching("\udfffb") == 0b01


def test_a_search_past_pcre2s_limits_is_answered_by_re() -> None:
    """Nested repeats backtrack exponentially; PCRE2 gives up at its match limit, and ``re`` answers instead. (The
    lookbehind keeps the prefilter, which drops it, from ruling the text out first.)"""
    compiled, text = CompiledPattern(re.compile(r"(?:x+x+)+y(?<=zy)")), "x" * 24 + "y"
    with pytest.raises(native.PatternLimitError):
        compiled.native.search(text)
    assert compiled.search(text) is False


def test_a_large_class_is_written_once_and_called() -> None:
    """``\\w`` is ~700 ranges: repeated inline, a pattern outgrows PCRE2's compiled size."""
    once = pcre_source(re.compile(r"(?<!\w)a[^\w\x00]b"))
    many = pcre_source(re.compile(r"(?<!\w)a" + r"[^\w\x00]b" * 20))
    assert once.count("(?<pyclass") == many.count("(?<pyclass") == 2
    assert len(many) - len(once) < 20 * 100


def test_the_prefilter_drops_what_rusts_regex_cannot_run() -> None:
    source = prefilter_source(re.compile(r"(?<!\w)(a|b)\1+?(?>c)(?!\w)$"))
    assert "(?<" not in source and "(?!" not in source and "\\1" not in source and "$" not in source
    assert source == "(?:[a-b])(?:(?:[a-b])){1,}(?:c)"


@pytest.mark.parametrize(
    "source",
    [r"(?i)kid", r"a\Bb", r"(a)?(?(1)b|c)", r"(?s:.)", r"a{70000}"],
)
def test_what_has_no_exact_translation_is_refused(source: str) -> None:
    with pytest.raises(ValueError, match="translation"):
        CompiledPattern(re.compile(source))


def test_a_substitution_by_a_pattern_that_can_match_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        CompiledPattern(re.compile("a*")).delete_within("aa", normalise._SEPARATORS)


@given(st.text(alphabet=st.sampled_from("kid 1l0345 78@$!+|éx\x7f"), max_size=30))
def test_leetspeak_read_from_ascii_bytes_is_read_as_from_the_text(text: str) -> None:
    """ASCII prompts take bytes.translate, the rest str.translate: both give the same readings."""
    assert normalise._leet_readings(text) == [text.translate(table) for table in (normalise._LEET_I, normalise._LEET_L)]


@given(st.text(alphabet=st.sampled_from("aB1 \t\n\x0b\x0c\r\x1c\x1f\x00\x7f\u00a0\u2003\u3000\u2028\u0085é")))
def test_folding_collapses_whitespace_as_re_would(text: str) -> None:
    """fold joins str.split's words, as it once substituted re's ``\\s+``; control characters go first."""
    assert " ".join(text.split()) == re.sub(r"\s+", " ", text).strip()
    if text.isascii():
        assert normalise.fold(text) == re.sub(r"\s+", " ", text.translate(normalise._CONTROL).lower()).strip()


def test_a_text_with_nothing_to_join_comes_back_as_the_same_string() -> None:
    """Most prompts have no split word: the normaliser's substitution does not copy them, whether the prefilter
    rules them out (no single letters between separators) or PCRE2 finds no match ("of a harbour")."""
    for text in ("watercolor harbour at dawn", "a watercolor of a harbour at dawn"):
        assert normalise._SPLIT_WORD.delete_within(text, normalise._SEPARATORS) is text
    assert normalise._SPLIT_WORD.delete_within("n u d e", normalise._SEPARATORS) == "nude"
