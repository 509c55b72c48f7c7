"""Python regular expressions run by PCRE2's JIT, answering exactly as Python's ``re`` does.

The lexicon and the normaliser are written, reviewed and tested as Python patterns; ``re`` searches a prompt
at ~10-20 ns a character and pattern, which made them most of an unseen prompt's cost. Here each pattern is
parsed by ``re``'s own parser and written out in PCRE2's syntax, construct for construct, and
``detectors.native.Pattern`` compiles it.

Exactness rests on three rules:

- Python reads ``\\w``, ``\\d``, ``\\s`` and ``\\b`` through its own Unicode database and PCRE2 through another
  version's, so every class is written as the set of code points this interpreter's ``re`` puts in it. A set
  too large to repeat (``\\w`` is ~700 ranges) is written once, as a named group the pattern calls.
- Constructs that this translation does not carry over exactly (flags, conditional groups, ``\\B``) are refused
  when a pattern is compiled, never misread.
- PCRE2 cannot take a string holding a lone surrogate, and stops a search at its match limits; ``re`` answers
  those calls instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

import numpy as np

from detectors import native

Ranges = tuple[tuple[int, int], ...]
"""A set of code points: sorted, disjoint, inclusive ranges, never touching the surrogates (no UTF-8 holds them)."""

_SURROGATES = (0xD800, 0xDFFF)
_LAST = 0x10FFFF
_INLINE_RANGES = 48
"""A class of up to this many ranges is written where it is used; a larger one once per pattern, and called."""
_MAX_BOUND = 65535
"""PCRE2's largest repeat count."""


def _normalised(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, merged, and with the surrogates cut out."""
    merged: list[list[int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    cut: list[tuple[int, int]] = []
    for low, high in merged:
        if low < _SURROGATES[0] <= high or low <= _SURROGATES[1] < high or _SURROGATES[0] <= low <= _SURROGATES[1]:
            if low < _SURROGATES[0]:
                cut.append((low, _SURROGATES[0] - 1))
            if high > _SURROGATES[1]:
                cut.append((_SURROGATES[1] + 1, high))
        else:
            cut.append((low, high))
    return tuple(cut)


def _complement(ranges: Ranges) -> Ranges:
    gaps, start = [], 0
    for low, high in ranges:
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= _LAST:
        gaps.append((start, _LAST))
    return _normalised(gaps)


@cache
def _categories() -> dict[Any, Ranges]:
    """What ``\\d``, ``\\s`` and ``\\w`` and their negations hold in this interpreter's ``re`` (~0.1 s, once)."""
    # Every code point but the surrogates, in order: position i holds code point i, or i + 0x800 past them.
    text = np.concatenate(
        [np.arange(_SURROGATES[0], dtype="<u4"), np.arange(_SURROGATES[1] + 1, _LAST + 1, dtype="<u4")]
    ).tobytes().decode("utf-32-le")

    def code_point(position: int) -> int:
        return position if position < _SURROGATES[0] else position + _SURROGATES[1] + 1 - _SURROGATES[0]

    def members(pattern: str) -> Ranges:
        return _normalised((code_point(m.start()), code_point(m.end() - 1)) for m in re.finditer(pattern, text))

    sets: dict[Any, Ranges] = {}
    for positive, negative, pattern in (
        (sre.CATEGORY_DIGIT, sre.CATEGORY_NOT_DIGIT, r"\d+"),
        (sre.CATEGORY_SPACE, sre.CATEGORY_NOT_SPACE, r"\s+"),
        (sre.CATEGORY_WORD, sre.CATEGORY_NOT_WORD, r"\w+"),
    ):
        sets[positive] = members(pattern)
        sets[negative] = _complement(sets[positive])
    return sets


@cache
def _class_members(items: tuple[tuple[Any, Any], ...]) -> Ranges:
    """The code points of one ``[...]`` as ``re``'s parser gives it."""
    negate, ranges = False, []
    for op, value in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            ranges.append((value, value))
        elif op is sre.RANGE:
            ranges.append(value)
        elif op is sre.CATEGORY:
            ranges.extend(_categories()[value])
        else:
            raise ValueError(f"class item {op} has no exact PCRE2 translation here")
    members = _normalised(ranges)
    return _complement(members) if negate else members


def _code_point(value: int) -> str:
    return chr(value) if chr(value).isascii() and chr(value).isalnum() else f"\\x{{{value:x}}}"


@cache
def _ranges_text(members: Ranges) -> str:
    """A class's body, in the syntax PCRE2 and Rust's regex share."""
    return "".join(
        _code_point(low) if low == high else f"{_code_point(low)}-{_code_point(high)}" for low, high in members
    )


def _ascii_part(members: Ranges) -> Ranges:
    return tuple((low, min(high, 0x7F)) for low, high in members if low <= 0x7F)


class _Writer:
    """Writes one parsed pattern in PCRE2's syntax; large classes are collected as named groups.

    As a ``superset``, it writes instead a pattern for Rust's ``regex`` (no lookarounds, no back references) that
    matches wherever the pattern does, and maybe elsewhere: assertions are dropped and a back reference becomes its
    group's pattern, so each construct accepts at least what it did."""

    def __init__(self, superset: bool = False) -> None:
        self.superset = superset
        self.defined: dict[Ranges, str] = {}
        self.groups: dict[int, str] = {}

    def pattern(self, parsed: Any) -> str:
        body = self.sequence(parsed)
        if not self.defined:
            return body
        # After the body, so the named groups are numbered after every group the body captures.
        groups = "".join(f"(?<{name}>[{_ranges_text(members)}])" for members, name in self.defined.items())
        return f"{body}(?(DEFINE){groups})"

    def sequence(self, items: Iterable[tuple[Any, Any]]) -> str:
        return "".join(self.item(op, value) for op, value in items)

    def charset(self, members: Ranges) -> str:
        if not members:
            return "[^\\x{0}-\\x{10ffff}]" if self.superset else "(*FAIL)"
        if self.superset and len(members) > _INLINE_RANGES:
            # Wider still, and so still a superset: a large class holds every character past ASCII.
            members = _normalised([*_ascii_part(members), (0x80, _LAST)])
        if self.superset or len(members) <= _INLINE_RANGES:
            return f"[{_ranges_text(members)}]"
        # Most text is ASCII: its part of the class is tested inline, and only a wider character calls the group.
        ascii_part = _ascii_part(members)
        wide_part = tuple((max(low, 0x80), high) for low, high in members if high >= 0x80)
        name = self.defined.setdefault(wide_part, f"pyclass{len(self.defined)}")
        if not ascii_part:
            return f"(?:(?=[^\\x{{0}}-\\x{{7f}}])(?&{name}))"
        return f"(?:[{_ranges_text(ascii_part)}]|(?=[^\\x{{0}}-\\x{{7f}}])(?&{name}))"

    def item(self, op: Any, value: Any) -> str:
        if op is sre.LITERAL:
            return self.charset(_normalised([(value, value)])) if 0xD800 <= value <= 0xDFFF else _code_point(value)
        if op is sre.NOT_LITERAL:
            return self.charset(_complement(_normalised([(value, value)])))
        if op is sre.ANY:
            return self.charset(_complement(((10, 10),)))  # no DOTALL: anything but a newline
        if op is sre.IN:
            return self.charset(_class_members(tuple(value)))
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(branch) for branch in value[1]) + ")"
        if op is sre.SUBPATTERN:
            group, add_flags, del_flags, parsed = value
            if add_flags or del_flags:
                raise ValueError("inline flags have no exact PCRE2 translation here")
            inner = self.sequence(parsed)
            if group:
                self.groups[group] = inner
            return ("(" if group and not self.superset else "(?:") + inner + ")"
        if op is sre.ATOMIC_GROUP:
            return ("(?:" if self.superset else "(?>") + self.sequence(value) + ")"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, parsed = value
            if max(low, 0 if high is sre.MAXREPEAT else high) > _MAX_BOUND:
                raise ValueError(f"a repeat bound over {_MAX_BOUND} has no PCRE2 translation")
            bound = f"{{{low},{'' if high is sre.MAXREPEAT else high}}}"
            mode = "" if self.superset else {sre.MAX_REPEAT: "", sre.MIN_REPEAT: "?", sre.POSSESSIVE_REPEAT: "+"}[op]
            return f"(?:{self.sequence(parsed)}){bound}{mode}"
        if op in (sre.ASSERT, sre.ASSERT_NOT, sre.AT) and self.superset:
            return ""
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            direction, parsed = value
            opener = {(True, 1): "(?=", (True, -1): "(?<=", (False, 1): "(?!", (False, -1): "(?<!"}
            return opener[op is sre.ASSERT, direction] + self.sequence(parsed) + ")"
        if op is sre.GROUPREF:
            return f"(?:{self.groups[value]})" if self.superset else f"\\g{{{value}}}"
        if op is sre.AT:
            return self.position(value)
        raise ValueError(f"{op} has no exact PCRE2 translation here")

    def position(self, at: Any) -> str:
        if at is sre.AT_BOUNDARY:
            word = self.charset(_categories()[sre.CATEGORY_WORD])
            return f"(?:(?<={word})(?!{word})|(?<!{word})(?={word}))"
        # No MULTILINE: ^ and \A are the string's start; $ its end or before a final newline, as in PCRE2; \Z its end.
        positions = {sre.AT_BEGINNING: "\\A", sre.AT_BEGINNING_STRING: "\\A", sre.AT_END: "$", sre.AT_END_STRING: "\\z"}
        if at not in positions:
            raise ValueError(f"{at} has no exact PCRE2 translation here")
        return str(positions[at])


def _parsed(pattern: re.Pattern[str]) -> Any:
    if pattern.flags & ~re.UNICODE:
        raise ValueError(f"flags {re.RegexFlag(pattern.flags)!r} have no exact PCRE2 translation here")
    return _parser.parse(pattern.pattern, pattern.flags)


def pcre_source(pattern: re.Pattern[str]) -> str:
    """``pattern`` in PCRE2's syntax, for a subject in UTF-8; ValueError for what has no exact translation."""
    return _Writer().pattern(_parsed(pattern))


def prefilter_source(pattern: re.Pattern[str]) -> str:
    """A pattern for Rust's ``regex`` that matches in every text ``pattern`` matches in (see ``_Writer``)."""
    return _Writer(superset=True).pattern(_parsed(pattern))


class CompiledPattern:
    """A Python pattern and its PCRE2 translation, with ``re``'s answers."""

    __slots__ = ("matches_empty", "native", "pattern", "prefilter")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        parsed = _parsed(pattern)
        self.pattern = pattern
        self.prefilter = _Writer(superset=True).pattern(parsed)
        """The superset Rust's regex runs first (``prefilter_source``)."""
        self.native = native.Pattern(_Writer().pattern(parsed), self.prefilter)
        self.matches_empty = parsed.getwidth()[0] == 0

    def search(self, text: str) -> bool:
        """``self.pattern.search(text) is not None``."""
        try:
            return self.native.search(text)
        except (UnicodeEncodeError, native.PatternLimitError):
            return self.pattern.search(text) is not None

    def delete_within(self, text: str, inner: CompiledPattern) -> str:
        """``self.pattern.sub(lambda m: inner.pattern.sub("", m.group(0)), text)``."""
        if self.matches_empty or inner.matches_empty:
            raise ValueError("delete_within takes patterns that never match the empty string")
        try:
            return self.native.delete_within(text, inner.native)
        except (UnicodeEncodeError, native.PatternLimitError):
            return self.pattern.sub(lambda found: inner.pattern.sub("", found.group(0)), text)


class CompiledPatternSet:
    """Python patterns searched by PCRE2 in one call: which of them match a text."""

    __slots__ = ("native", "patterns")

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self.patterns = tuple(patterns)
        compiled = [CompiledPattern(pattern) for pattern in self.patterns]
        self.native = native.PatternSet([one.native for one in compiled], [one.prefilter for one in compiled])

    def matching(self, text: str, among: int = -1) -> int:
        """Bit ``i`` set when ``patterns[i]`` matches somewhere in ``text``, for the patterns whose bit is set in
        ``among`` (all of them by default)."""
        among &= (1 << len(self.patterns)) - 1
        try:
            return self.native.matching(text, among)
        except (UnicodeEncodeError, native.PatternLimitError):
            return sum(
                1 << index
                for index, pattern in enumerate(self.patterns)
                if among >> index & 1 and pattern.search(text) is not None
            )
