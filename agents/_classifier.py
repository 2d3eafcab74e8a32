"""Intent routing by nearest labelled exemplar, with WordLlama embeddings.

Small generative models pick the right class about half the time when asked free-form;
comparing a message to a handful of labelled examples is both better and ~1000× cheaper.
WordLlama ships its weights in its wheel; we load them from there, never from a hub.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from typing import Any

import numpy as np

from chamberlain.agents._steps import ClassifyCall, ClassifyReply


@cache
def _wordllama() -> Any:
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)


class ExemplarClassifier:
    """Cosine similarity to each class's closest exemplar; ``margin`` = best − second best."""

    def __init__(self) -> None:
        self._exemplars: dict[str, tuple[list[str], np.ndarray]] = {}

    def _embedded(self, classes: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
        key = hashlib.sha256(json.dumps(classes, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        if key not in self._exemplars:
            labels = [label for label, examples in classes.items() for _ in examples]
            texts = [text for examples in classes.values() for text in examples]
            self._exemplars[key] = (labels, _normalized(_wordllama().embed(texts)))
        return self._exemplars[key]

    def classify(self, call: ClassifyCall) -> ClassifyReply:
        labels, exemplars = self._embedded(call.classes)
        similarities = exemplars @ _normalized(_wordllama().embed([call.text]))[0]
        scores = {label: -1.0 for label in call.classes}
        for label, similarity in zip(labels, similarities, strict=True):
            scores[label] = max(scores[label], float(similarity))
        ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
        return ClassifyReply(label=ranked[0][0], margin=ranked[0][1] - ranked[1][1], scores=scores)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
