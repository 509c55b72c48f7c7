"""The learned half of the scorer: a scikit-learn pipeline (character n-gram TF-IDF + logistic
regression) trained by ``train.py`` in this folder and shipped as ``prompt_model.joblib``.

The artifact records the scikit-learn version that wrote it. A pickle is only trusted by the version
that wrote it, so under any other version the model is retrained in memory from the same seeded
script (a second or two) rather than loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from numpy.typing import NDArray

from detectors.minor_safety.normalise import plain_form, word_forms

ARTIFACT = Path(__file__).with_name("prompt_model.joblib")
MODEL_VERSION = "minor-prompt-tfidf-lr-2"

log = logging.getLogger(__name__)


def model_input(forms: Sequence[str]) -> str:
    """What the model reads, from a prompt's word forms: the plain form and its leetspeak reading, so
    both spellings share n-grams."""
    return " | ".join(forms[:2])


def model_text(prompt: str) -> str:
    return model_input(word_forms(plain_form(prompt)))


class PromptModel:
    """Probability that a prompt sexualises or seeks to exploit a minor, for a batch at once."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def probabilities_of_inputs(self, inputs: Sequence[str]) -> NDArray[np.float64]:
        """For texts already made by ``model_input`` (the scorer has the forms at hand)."""
        probabilities: NDArray[np.float64] = self.pipeline.predict_proba(inputs)[:, 1]
        return probabilities

    def probabilities(self, prompts: Sequence[str]) -> NDArray[np.float64]:
        return self.probabilities_of_inputs([model_text(prompt) for prompt in prompts])


@cache
def load_model(path: Path = ARTIFACT) -> PromptModel:
    """Loaded once per process and shared by every detector instance (it is read-only)."""
    artifact: dict[str, Any] = joblib.load(path)
    if artifact["sklearn_version"] == sklearn.__version__ and artifact["model_version"] == MODEL_VERSION:
        return PromptModel(artifact["pipeline"])
    from detectors.minor_safety.train import train_pipeline

    log.warning(
        "%s was written by scikit-learn %s for %s; retraining in memory under %s",
        path.name, artifact["sklearn_version"], artifact["model_version"], sklearn.__version__,
    )
    return PromptModel(train_pipeline())
