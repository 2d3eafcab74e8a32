"""Text as retrieval sees it: words (jieba for Chinese, which writes no spaces) and meaning
vectors (WordLlama, whose weights ship in its wheel and are loaded from there, never a hub)."""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

import numpy as np
from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN_PLUS

_STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | frozenset(STOPWORDS_CHINESE) | {"请问", "怎么办"}


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def words(text: str) -> list[str]:
    """Lower-cased words and Chinese terms (jieba's search mode: 室外机 also as 室外), without
    stopwords and punctuation; product codes such as ``E5`` and ``4021-17`` stay searchable."""
    return [
        w
        for w in (token.strip().lower() for token in _jieba().cut_for_search(text))
        if w and w not in _STOPWORDS and any(ch.isalnum() for ch in w)
    ]


@cache
def _wordllama() -> Any:
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)


def embed(texts: list[str]) -> np.ndarray:
    """Unit vectors, one row per text (cosine similarity is their dot product)."""
    vectors = np.asarray(_wordllama().embed(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
