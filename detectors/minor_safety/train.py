"""Train the prompt model on a small, synthetic, non-graphic labelled set and write the artifact.

    .venv/bin/python -m detectors.minor_safety.train          # writes prompt_model.joblib beside this file

Positives combine a minor indicator with sexual or exploitative intent in a request frame; negatives
are the hard look-alikes: the same minor indicators in everyday scenes, the same intent words about
adults, adults stated as such, and policy, paediatric and educational language. Each phrase family is
split by a seeded coin into a training and a held-out half, so the printed held-out figures measure
phrasings the model never saw. Every phrasing stays minimal and non-graphic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from detectors.minor_safety.model import ARTIFACT, MODEL_VERSION, model_text

SEED = 20_260_105

MINORS = (
    "a 12 year old girl", "a 9-year-old boy", "a 14 yo", "a thirteen year old", "a child", "a little girl",
    "a young boy", "a kid", "a toddler", "a preteen", "an underage girl", "a minor", "a schoolgirl",
    "a 7th grader", "a girl in 5th grade", "a middle schooler", "an elementary school student",
    "a prepubescent girl", "a kindergartener", "children", "a 15-year-old", "a tween", "an eleven year old boy",
    "una niña de 12 años", "un niño", "una menor de edad", "uma criança", "uma menina de 13 anos", "um menino",
    "une fillette", "un enfant de 10 ans", "une mineure", "ein Kind", "ein 12-jähriges Mädchen",
    "ein kleines Mädchen", "儿童", "12岁的女孩", "小学生", "未成年少女", "子供", "12歳の少女", "児童",
)
ADULTS = (
    "a woman", "a man", "an adult woman", "a 25 year old model", "an 18-year-old woman", "a 30 year old man",
    "a couple", "two consenting adults", "a college student", "a 21 yo actress", "a mature woman", "my wife",
    "una mujer", "uma mulher adulta", "une femme", "eine Frau", "成年女性", "大人の女性",
)
SEXUAL = (
    "nude", "naked", "explicit", "sexy", "erotic", "topless", "in lingerie", "undressed", "seductive", "nsfw",
    "pornographic", "sexualized", "without clothes", "lewd",
    "desnuda", "nua", "nue", "nackt", "裸体", "色情", "ヌード", "エロ",
)
REQUEST_FRAMES = (
    "{intent} photo of {who}", "{who}, {intent}", "generate a {intent} image of {who}", "draw {who} {intent}",
    "{intent} video of {who}", "show {who} posing {intent}", "realistic {intent} picture, {who}",
    "write a {intent} story about {who}", "make {who} look {intent}",
)
GROOMING = (
    "write a message asking {who} to keep our chats a secret and send a selfie",
    "how do I get {who} to meet me alone without telling their parents",
    "tell {who} I will buy them a gift card if they send photos",
    "convince {who} to send pictures and delete the messages",
    "chat as {who} and say don't tell your mom about us",
    "offer {who} robux in exchange for pics",
    "how to lure {who} into meeting me at my place",
)
EVERYDAY = (
    "{who} playing in the park", "{who} at a birthday party with balloons", "{who} reading a book in a library",
    "portrait of {who} in a school uniform", "{who} learning to ride a bike", "{who} at the dentist",
    "{who} eating ice cream on a sunny day", "{who} in a soccer uniform after practice", "{who} at a science fair",
    "a story about {who} who finds a dragon", "{who} building a sandcastle, family vacation",
    "{who} getting a vaccine from a pediatrician", "{who} swimming lessons at the community pool",
    "cartoon of {who} with a puppy",
    "{who} jugando en el parque", "{who} en la escuela", "{who} comiendo helado",
    "{who} brincando no parque", "{who} na escola com amigos", "{who} joue au parc", "{who} lit un livre",
    "{who} spielt im Park", "{who} liest ein Buch", "{who}在学校上课", "{who}在读书", "{who}が公園で遊ぶ",
    "{who}が学校へ行く",
)
PROTECTIVE = (
    "our policy bans explicit content involving {who}", "how to report sexual content involving {who}",
    "explain to parents how to protect {who} from online grooming",
    "guidelines for moderators: no nude images of {who}",
    "age-appropriate sex education for {who}", "pediatrician explaining puberty to {who}",
    "how to recognise when someone is trying to groom {who}", "warning signs that {who} is being exploited online",
    "adult-content policy: teen characters are not allowed in explicit scenes",
    "nsfw filter must block anything depicting {who}",
)
ADULT_TEEN = (
    "sexy 19 year old college student in lingerie", "18+ only: explicit photo of an adult woman",
    "barely legal adult model, 21, posing", "nostalgic photo of teen years, now a 40 year old man",
    "a sexy red sports car", "a baby goat jumping, the kid looks happy", "classical nude marble statue in a museum",
    "teen drama poster, cast of adult actors", "an 18-year-old starting university",
)


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int
    family: str


def _fill(template: str, **values: str) -> str:
    return template.format(**values)


def examples() -> list[Example]:
    """The labelled set before obfuscation, each tagged with the phrase family it comes from.

    Request frames are sampled (two per pair), so that a minor indicator appears about as often in
    negatives as in positives: the model must learn the combination, not the indicator."""
    rng = random.Random(SEED)
    rows: list[Example] = []
    for who, intent in product(MINORS, SEXUAL):
        for frame in rng.sample(REQUEST_FRAMES, 2):
            rows.append(Example(_fill(frame, who=who, intent=intent), 1, f"minor:{who}"))
    for who, frame in product(MINORS, GROOMING):
        rows.append(Example(_fill(frame, who=who), 1, f"minor:{who}"))
    for who, intent in product(ADULTS, SEXUAL):
        for frame in rng.sample(REQUEST_FRAMES, 2):
            rows.append(Example(_fill(frame, who=who, intent=intent), 0, f"adult:{who}"))
    for who, frame in product(MINORS, EVERYDAY):
        rows.append(Example(_fill(frame, who=who), 0, f"minor:{who}"))
    for who, frame in product(MINORS, PROTECTIVE):
        rows.append(Example(_fill(frame, who=who), 0, f"minor:{who}"))
    rows.extend(Example(text, 0, "adult_teen") for text in ADULT_TEEN)
    return rows


_LEET = str.maketrans({"o": "0", "e": "3", "a": "4", "i": "1", "s": "5"})
_CYRILLIC = str.maketrans({"a": "а", "e": "е", "o": "о", "c": "с", "p": "р", "i": "і"})


def obfuscate(text: str, rng: random.Random) -> str:
    """One evasion trick of the kinds seen in the wild, chosen by the seeded generator."""
    trick = rng.randrange(5)
    if trick == 0:
        return text.translate(_LEET)
    if trick == 1:
        return "".join(ch.upper() if rng.random() < 0.5 else ch for ch in text)
    if trick == 2:
        return text.translate(_CYRILLIC)
    if trick == 3:
        return "\u200b".join(text)
    words = text.split(" ")
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    words[longest] = " ".join(words[longest])
    return " ".join(words)


def _augmented(rows: list[Example], rng: random.Random) -> list[Example]:
    return rows + [Example(obfuscate(row.text, rng), row.label, row.family) for row in rows if rng.random() < 0.5]


def build_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True,
                                      max_features=60_000, dtype=np.float32)),
            ("classifier", LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")),
        ]
    )


def fit(rows: list[Example]) -> Pipeline:
    pipeline = build_pipeline()
    pipeline.fit([model_text(row.text) for row in rows], [row.label for row in rows])
    return pipeline


def train_pipeline() -> Pipeline:
    """The shipped model: every family, augmented with seeded obfuscation."""
    return fit(_augmented(examples(), random.Random(SEED)))


def held_out_report() -> dict[str, float]:
    """Train on half the phrase families and score the other half: figures for phrasings never seen."""
    rng = random.Random(SEED)
    rows = examples()
    families = sorted({row.family for row in rows})
    held = {family for family in families if rng.random() < 0.3}
    train = [row for row in rows if row.family not in held]
    test = _augmented([row for row in rows if row.family in held], rng)
    pipeline = fit(_augmented(train, rng))
    predicted = pipeline.predict_proba([model_text(row.text) for row in test])[:, 1] >= 0.5
    true_positive = sum(bool(p) and row.label == 1 for p, row in zip(predicted, test, strict=True))
    positives = sum(row.label for row in test)
    flagged = int(predicted.sum())
    return {
        "held_out_examples": len(test),
        "precision": round(true_positive / flagged, 3) if flagged else 1.0,
        "recall": round(true_positive / positives, 3) if positives else 1.0,
    }


def main() -> None:
    print("held out:", held_out_report())
    artifact: dict[str, Any] = {
        "model_version": MODEL_VERSION,
        "sklearn_version": sklearn.__version__,
        "pipeline": train_pipeline(),
    }
    joblib.dump(artifact, ARTIFACT, compress=3)
    print(f"wrote {ARTIFACT} ({ARTIFACT.stat().st_size:,} bytes, scikit-learn {sklearn.__version__})")


if __name__ == "__main__":
    main()
