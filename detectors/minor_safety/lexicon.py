"""The lexicon: what marks a prompt as about a minor, what marks sexual or exploitative intent, and
what marks the everyday contexts (policy, protection, medicine, adults) where both appear innocently.

Patterns are written in folded form (see ``normalise.fold``: lower case, no accents) and matched
against every form of a prompt at once. Ages and grades are read from digits in the plain form.
They are written and tested as Python patterns; ``scoring`` runs them in PCRE2, translated by ``pcre``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from detectors.minor_safety.normalise import MATCH_SEPARATOR


class Signal(Enum):
    MINOR = "minor"
    INTENT = "intent"


@dataclass(frozen=True, slots=True)
class Category:
    """One named family of terms; ``strong`` ones suffice on their own as their signal."""

    name: str
    signal: Signal
    strong: bool
    pattern: re.Pattern[str]


def _words(*alternatives: str) -> re.Pattern[str]:
    """Whole-word alternatives; a term never crosses from one form of the prompt into the next."""
    body = "|".join(alternatives).replace(" ?", f"[^\\w{MATCH_SEPARATOR}]{{0,3}}")
    body = body.replace(" ", f"[^\\w{MATCH_SEPARATOR}]{{1,3}}")
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)")


def _substrings(*terms: str) -> re.Pattern[str]:
    """For Chinese and Japanese, which do not separate words by spaces."""
    return re.compile("|".join(map(re.escape, terms)))


_EN_AGE_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen"
)
_ORDINALS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth"

# A stated age: the number is group 1; a category fires only when it is under 18.
AGE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<!\d)(\d{1,2}) ?-? ?(?:years?|yrs?|y) ?-? ?(?:olds?|o)(?!\w)"),
    re.compile(r"(?<!\d)(\d{1,2}) ?(?:yo|y/o|y\.o\.?)(?!\w)"),
    re.compile(r"(?<!\w)(?:aged?|age of|ages) (\d{1,2})(?!\d)"),
    # "she is only 14", "he's 12", "just turned 13": a person's age said without "years old".
    re.compile(r"(?<!\w)(?:she|he|i|you)(?: is|'s| was| am| are) (?:only |just |barely )?(\d{1,2})(?![\d:.%])"),
    re.compile(r"(?<!\w)(?:just )?turned (\d{1,2})(?![\d:.%])"),
    re.compile(r"(?<!\d)(\d{1,2}) ?-? ?(?:anos|ans|jahre|jahrige|jahriger|jahriges|jahrigen)(?!\w)"),
    re.compile(r"(?<!\d)(\d{1,2}) ?(?:岁|歲|歳|才)"),
)
WORD_AGE = re.compile(rf"(?<!\w)(?:{_EN_AGE_WORDS}) ?-? ?(?:years?|yrs?) ?-? ?olds?(?!\w)")

CATEGORIES: tuple[Category, ...] = (
    Category("grade_level", Signal.MINOR, True, re.compile(
        rf"(?<!\w)(?:(?:[1-9]|1[0-2])(?:st|nd|rd|th)|{_ORDINALS}) ?-? ?grad(?:e|er|ers)(?!\w)"
        r"|(?<!\w)grade (?:[1-9]|1[0-2])(?!\d)|(?<!\w)year [1-9] (?:pupil|student|girl|boy)s?(?!\w)"
    )),
    Category("school_term", Signal.MINOR, True, _words(
        "kindergartn?en?(?:er)?s?", "elementary school(?:er)?s?", "middle school(?:er)?s?", "primary school",
        "junior high", "grade school(?:er)?", "schoolgirls?", "schoolboys?", "school girls?", "school boys?",
        "escuela primaria", "colegiala", "escola primaria", "ensino fundamental", "ecole primaire", "ecoliere",
        "collegienne", "grundschule", "grundschulerin", "schulmadchen",
    )),
    Category("school_term", Signal.MINOR, True, _substrings("小学生", "中学生", "小学", "初中生")),
    Category("child_term", Signal.MINOR, True, _words(
        "child", "childs", "children", "childern", "chlid", "chid", "(?<!goat.)kids?(?!.goats?)", "kiddies?",
        "kiddos?", "toddlers?",
        "infants?", "preteens?", "pre teens?", "tweens?", "under ?age", "underaged", "minors", "(?:a|an|the|of|with|"
        "involving|underage) minor", "jailbait", "lolita", "loli", "lolis", "shota", "shotacon", "lolicon", "pedo",
        "(?:una|la|las|un|el|los|mi|de|dos) ni(?:na|no)s?", "ninas", "ninos", "menor de edad", "menores de edad",
        "menores", "crianca",
        "criancas", "menina", "meninas", "menino", "meninos", "menor de idade", "enfant", "enfants", "fillette",
        "fillettes", "mineure?s?", "(?:ein|das|dem|des|kleines|mein|nacktes|nackte) kind", "kinder\\w*", "kindes",
        "minderjahrige?n?",
    )),
    Category("child_term", Signal.MINOR, True, _substrings(
        "儿童", "兒童", "幼女", "女童", "男童", "未成年", "小孩", "孩子", "萝莉", "蘿莉", "小女孩", "小男孩",
        "子供", "子ども", "こども", "児童", "幼児", "ロリ",
    )),
    Category("diminutive", Signal.MINOR, True, _words(
        "(?:little|lil|tiny|young|wee) (?:girls?|boys?|ones?|princess)", "ninita", "ninito", "menininha",
        "menininho", "petite fille", "petit garcon", "kleines madchen", "kleiner junge",
    )),
    Category("body_development", Signal.MINOR, True, _words(
        "pre ?pubescent", "prepubert(?:al|y)", "before puberty", "(?:not|hasnt|hasn t|has not) (?:yet )?"
        "(?:hit|reached|started) puberty", "not (?:yet )?developed", "undeveloped (?:body|chest|breasts)",
        "training bra", "barely developed",
    )),
    Category("teen_term", Signal.MINOR, False, _words(
        "teens?", "teenage", "teenagers?", "teenies?", "barely legal", "high school(?:er)?s?", "adolescentes?",
        "ados", "jugendliche?n?", "young teens?",
    )),
    Category("teen_term", Signal.MINOR, False, _substrings("少女", "少年", "青少年", "女子高生", "女高中生")),
    Category("sexual", Signal.INTENT, True, _words(
        "nudes?", "nudity", "naked", "nekkid", "nekid", "noods?", "nuds?", "explicit", "explict", "erotic",
        "erotica", "porn", "porno", "pornographic", "pron", "sexy", "sexi", "secksy", "sexual", "sexualy?",
        "sexually", "sexuali[sz]ed", "sexuali[sz]ing", "seggs", "secks", "sexting", "seductive", "seductively",
        "seduce", "seducing", "lingerie", "topless", "undress", "undressed", "undressing", "striptease", "stripping",
        "stripper", "nsfw", "xxx", "lewd", "hentai", "fetish", "onlyfans", "aroused", "horny", "kinky",
        "(?:without|no|taking off|takes off|take off) (?:any )?(?:clothes|clothing)", "clothes off",
        "desnud[oa]s?", "sin ropa", "erotic[oa]", "explicit[oa]", "nua", "nuas", "pelad[oa]s?", "sem roupa",
        "nue", "nues", "(?:enfant|fillette|fille|garcon)s? nue?s?", "deshabillee?", "erotique", "sexuelle?", "nackt",
        "nackte[nrsm]?", "erotisch", "sexuell",
    )),
    Category("sexual", Signal.INTENT, True, _substrings(
        "裸", "色情", "性感", "性爱", "做爱", "ヌート", "エロ", "性的", "わいせつ", "セックス",
    )),
    Category("exploitation", Signal.INTENT, True, _words(
        "our (?:little )?secret", "(?:dont|don t|do not|never) tell (?:your|ur|anyone|any one|mom|mum|dad)\\w*",
        "keep (?:it|this|that) (?:between us|a secret|secret)", "delete (?:the|our|these|those) (?:messages|chats?)",
        "meet (?:me|up) (?:alone|in private|secretly|without)", "come (?:over )?to my (?:house|place|room|hotel|car)"
        " alone", "(?:gifts?|money|robux|v ?bucks|gift ?cards?|cash|presents?|pay you|buy you)(?: \\w+){0,4} (?:for|if"
        " you send|in exchange for) (?:a |some |your |more )?(?:pics?|photos?|selfies?|videos?|images?)",
        "send (?:me )?(?:a |some |your |more )?(?:pics?|photos?|selfies?) of (?:your|ur) ?(?:self|body)",
        "lur(?:e|ing) (?:\\w+ ){1,3}(?:into|to (?:my|a|meet))", "sextortion", "nuestro secreto", "nosso segredo",
        "notre secret",
        "unser geheimnis",
    )),
    Category("suggestive", Signal.INTENT, False, _words(
        "sex", "panties", "sensual", "provocative", "naughty", "inappropriate(?:ly)?", "love scene",
        "romantic scene", "make out", "making out",
    )),
)

# Contexts where minor and sexual terms meet innocently: policy, moderation, protection, medicine.
PROTECTIVE_CONTEXT = _words(
    "polic(?:y|ies)", "guidelines?", "terms of (?:service|use)", "moderat(?:e|ion|or|ors)", "prohibit\\w*", "bans?",
    "banned", "forbid\\w*", "not allowed", "illegal", "report(?:s|ing)?", "prevent\\w*", "protect\\w*",
    "safeguard\\w*", "awareness", "education\\w*", "educat\\w*", "sex ed", "body safety", "classifier", "detect\\w*",
    "filter\\w*", "pa?ediatric\\w*", "pa?ediatrician", "doctor", "medical", "clinic", "law", "laws", "legal",
    "compliance", "safety",
)
# A request to depict or narrate: protective words do not excuse it. Plural nouns ("report images of
# minors") are how policy speaks of content; a request names one picture or a verb of making.
DEPICTION = _words(
    "(?:image|photo|photograph|pic|picture|video|render|drawing|portrait|selfie|clip|scene|story) of",
    "draw", "paint", "generate", "create", "make", "show me", "render", "write a", "imagen de", "foto de", "photo d",
    "bild von", "video de",
)
# An adult said in so many words: "teen" then means an adult's youth, not a minor.
ADULT_ASSERTION = _words(
    "18 ?\\+", "over 18", "18 or older", "adults?", "of age", "legal age", "consenting", "grown ?ups?", "mature",
    "(?:1[89]|[2-9]\\d) ?-? ?(?:years?|yrs?|y) ?-? ?old", "(?:1[89]|[2-9]\\d) ?(?:yo|y/o)", "aged? (?:1[89]|[2-9]\\d)",
    "college", "university",
)
