"""Undo the disguises people put on words to slip past a lexicon.

Every form a prompt is matched in comes from here, and the lexicon's own terms pass through the
same ``fold`` so that both sides agree on accents, case and confusables. Digits are read for ages
before leetspeak turns them into letters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from detectors.minor_safety.pcre import CompiledPattern

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u034f"))
# Control characters are dropped too: one of them is the separator between a prompt's forms.
_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])

# Cyrillic and Greek letters drawn like Latin ones (NFKC leaves them alone, as they are real letters).
# Lower case only: text is lower-cased first. A compact table rather than a dependency: these are the
# letters that spell the lexicon's words, and a full confusables database would map far more than that.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "з": "3", "и": "u", "і": "i", "ї": "i",
        "ј": "j", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t",
        "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ь": "b", "ү": "y", "һ": "h",
        "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ѵ": "v", "ɑ": "a", "ɡ": "g",
        "ı": "i", "ȷ": "j", "ℓ": "l",
    }
)
_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s", "!": "i", "+": "t", "|": "l"}
# "1" stands for both i and l ("k1d", "1ittle"), so the text is read once with each.
_LEET_I = str.maketrans({**_LEET, "1": "i"})
_LEET_L = str.maketrans({**_LEET, "1": "l"})
# The same readings for ASCII text, which bytes.translate reads ~10x faster than str.translate a dict.
_ASCII_LEET = [bytes.maketrans(bytes(table), "".join(table.values()).encode("ascii")) for table in (_LEET_I, _LEET_L)]
_LEET_CHARACTER = CompiledPattern(re.compile("[" + re.escape("".join(map(chr, _LEET_I))) + "]"))
# Letters or digits split by one repeated space or punctuation mark ("n u d e", "n.u.d.e", "1 3") are
# joined back; the same mark throughout keeps "a k.i.d" from swallowing the article.
_SPLIT_WORD = CompiledPattern(re.compile(r"(?<![^\W_])[^\W_]([\s.\-_*·•,'~/\\])[^\W_](?:\1[^\W_])+(?![^\W_])"))
# Digits only across spaces and filler marks: "3-5", "2.5" and "1,5" are ranges and decimals, not one age.
_SPLIT_NUMBER = CompiledPattern(re.compile(r"(?<![\d.,])\d(?:[\s_*·•~]\d)+(?![\d.,])"))
_SEPARATORS = CompiledPattern(re.compile(r"[\s.\-_*·•,'~/\\]"))
_STRETCHED = CompiledPattern(re.compile(r"(\w)\1{2,}"))


def fold(text: str) -> str:
    """Compatibility forms (fullwidth, mathematical letters), zero-width characters, case, confusables and
    accents all folded away; CJK and digits are kept."""
    if text.isascii():  # most prompts: none of the Unicode steps can change them
        if not text.isprintable():  # a control character, or a tab or newline, which split() takes anyway
            return " ".join(text.translate(_CONTROL).lower().split())
        text = text.lower()
        # Printable ASCII has no whitespace but the space: single spaces between words are what split() leaves.
        if "  " not in text and not text.startswith(" ") and not text.endswith(" "):
            return text
        return " ".join(text.split())
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).translate(_CONTROL)
    text = text.lower().translate(_CONFUSABLES)
    decomposed = unicodedata.normalize("NFD", text)
    text = unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))
    return " ".join(text.split())  # str.split's whitespace is re's \s


def _leet_readings(text: str) -> list[str]:
    if text.isascii():
        ascii_text = text.encode("ascii")
        return [ascii_text.translate(table).decode("ascii") for table in _ASCII_LEET]
    return [text.translate(table) for table in (_LEET_I, _LEET_L)]


def _joined(text: str) -> str:
    return _SPLIT_WORD.delete_within(_SPLIT_NUMBER.delete_within(text, _SEPARATORS), _SEPARATORS)


def plain_form(text: str) -> str:
    """Folded with split words and numbers joined: the form ages and grades are read from."""
    return _joined(fold(text))


def word_forms(plain: str) -> list[str]:
    """The forms lexicon words are matched in: as written, with leetspeak read both ways, and with
    stretched letters ("nuuude", "sexxxy") squeezed to two and to one."""
    if not _LEET_CHARACTER.search(plain):  # most prompts: both readings are the plain form, joined again
        forms = list(dict.fromkeys([plain, _joined(plain)]))
    else:
        forms = list(dict.fromkeys([plain, *map(_joined, _leet_readings(plain))]))
    if not _STRETCHED.search(MATCH_SEPARATOR.join(forms)):  # most prompts: squeezing changes no form
        return forms
    stretched = _STRETCHED.pattern
    squeezed = [stretched.sub(r"\1\1", form) for form in forms] + [stretched.sub(r"\1", form) for form in forms]
    return list(dict.fromkeys(forms + squeezed))


MATCH_SEPARATOR = "\x00"
"""Joins a prompt's forms into one string for a single regex pass; no lexicon pattern crosses it."""


@dataclass(slots=True)  # not frozen: a frozen dataclass is ~3x slower to make, and one is made per prompt
class PromptForms:
    """One prompt, normalised once for both the lexicon and the model."""

    plain: str
    words: list[str]

    @property
    def joined(self) -> str:
        """Every word form joined by ``MATCH_SEPARATOR``, for one regex pass over all of them."""
        return MATCH_SEPARATOR.join(self.words)


def prompt_forms(text: str) -> PromptForms:
    plain = plain_form(text)
    return PromptForms(plain, word_forms(plain))
