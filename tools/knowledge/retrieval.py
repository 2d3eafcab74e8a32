"""Hybrid retrieval over what the reader may see, with a confidence worth acting on.

Two rankings of the readable chunks — lexical (BM25, ``bm25s``) and by meaning (WordLlama
cosine) — fused by reciprocal rank fusion. Access control comes first: each reader's view
(:class:`~chamberlain.tools.knowledge.access.Reader`) gets an index built from the chunks it
may read only, so a forbidden document is never a candidate, never shifts a score, and its
words never weigh in the statistics (BM25's IDF) of someone else's search.

:attr:`Retrieval.confidence` combines three signals, each in [0, 1]:

- ``coverage``: the share of the question's words found in the best passage;
- ``agreement``: how many of the lexical top 3 are also in the semantic top 3;
- ``similarity``: the best passage's cosine to the question, scaled between what unrelated
  and what matching passages score. WordLlama scores Chinese text much higher throughout
  (an unrelated Chinese question ~0.6, a matching one 0.7–0.87; English ~0.15 vs 0.45–0.78,
  measured on the field-support corpus), so the scale depends on the question's script.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import bm25s
import numpy as np

from chamberlain.tools.knowledge.access import Reader
from chamberlain.tools.knowledge.corpus import Chunk, Document, chunks_of, load_corpus
from chamberlain.tools.knowledge.text import embed, words

RRF_K = 60  # reciprocal rank fusion's damping constant (Cormack et al., 2009)
CANDIDATES = 10  # from each ranking
SIMILARITY_SCALE = {"latin": (0.15, 0.55), "cjk": (0.6, 0.8)}  # WordLlama cosines: unrelated → matching
WEIGHTS = {"coverage": 0.4, "agreement": 0.3, "similarity": 0.3}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index it builds


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # fused (RRF)
    lexical_rank: int | None
    semantic_rank: int | None
    similarity: float


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        return round(sum(WEIGHTS[name] * self.signals.get(name, 0.0) for name in WEIGHTS), 3)


@dataclass
class _View:
    chunks: list[Chunk]
    index: bm25s.BM25 | None
    vectors: np.ndarray


class KnowledgeBase:
    """The documents of a corpus, chunked and embedded once; searched per reader."""

    def __init__(self, documents: list[Document]) -> None:
        ids = [d.id for d in documents]
        if len(set(ids)) != len(ids):
            raise ValueError(f"document IDs repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        self.documents = {d.id: d for d in documents}
        self.chunks = [c for d in documents for c in chunks_of(d)]
        self.by_id = {c.id: c for c in self.chunks}
        self._words = {c.id: words(c.searchable) for c in self.chunks}
        self._vectors = embed([c.searchable for c in self.chunks])
        self._views: dict[Reader, _View] = {}

    @classmethod
    def load(cls, folder: str | Path) -> KnowledgeBase:
        return cls(load_corpus(folder))

    def _view(self, reader: Reader) -> _View:
        if reader not in self._views:
            allowed = [i for i, c in enumerate(self.chunks) if reader.may_read(c.document)]
            index = None
            if allowed:
                index = bm25s.BM25()
                index.index([self._words[self.chunks[i].id] for i in allowed], show_progress=False)
            self._views[reader] = _View([self.chunks[i] for i in allowed], index, self._vectors[allowed])
        return self._views[reader]

    def search(self, query: str, reader: Reader, k: int = 3) -> Retrieval:
        """The ``k`` best passages ``reader`` may read, and the signals of how well they match."""
        view, terms = self._view(reader), words(query)
        if view.index is None or not query.strip():
            return Retrieval(hits=[])
        lexical_scores = view.index.get_scores(terms) if terms else np.zeros(len(view.chunks))
        lexical = [int(i) for i in np.argsort(-lexical_scores, kind="stable")[:CANDIDATES] if lexical_scores[i] > 0]
        similarities = view.vectors @ embed([query])[0]
        semantic = [int(i) for i in np.argsort(-similarities, kind="stable")[:CANDIDATES]]
        fused: dict[int, float] = {}
        for ranking in (lexical, semantic):
            for rank, i in enumerate(ranking, start=1):
                fused[i] = fused.get(i, 0.0) + 1 / (RRF_K + rank)
        order = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        hits = [
            Hit(
                chunk=view.chunks[i],
                score=round(fused[i], 5),
                lexical_rank=lexical.index(i) + 1 if i in lexical else None,
                semantic_rank=semantic.index(i) + 1 if i in semantic else None,
                similarity=round(float(similarities[i]), 4),
            )
            for i in order
        ]
        found, asked = set(self._words[hits[0].chunk.id]), set(terms)
        signals = {
            "coverage": len(asked & found) / len(asked) if asked else 0.0,
            "agreement": len(set(lexical[:3]) & set(semantic[:3])) / 3,
            "similarity": _scaled(hits[0].similarity, "cjk" if _CJK.search(query) else "latin"),
        }
        return Retrieval(hits=hits, signals={name: round(value, 3) for name, value in signals.items()})


def _scaled(similarity: float, script: str) -> float:
    floor, ceiling = SIMILARITY_SCALE[script]
    return min(1.0, max(0.0, (similarity - floor) / (ceiling - floor)))
