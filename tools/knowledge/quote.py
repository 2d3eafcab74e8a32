"""Extractive answers: the sentences of a passage that answer a question, quoted verbatim.

A small model cannot be trusted to write a grounded answer, but it can point at a passage; what
the answer then *says* is picked here, deterministically, by how many of the question's words
each sentence holds — so every word of the answer is in the cited passage by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chamberlain.tools.knowledge.text import words

# A sentence ends at Chinese end punctuation, or at Latin punctuation followed by a space (so
# "3.2.1" and "4021-18." inside a line stay whole), or at a line break.
_SENTENCE_END = re.compile(r"(?<=[。！？；])|(?<=[.!?;])\s+|\n+")


@dataclass(frozen=True)
class Quote:
    text: str
    coverage: float  # the share of the question's words the quoted sentences hold


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, in order."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def quote(question: str, passage: str, most: int = 2) -> Quote:
    """The (at most) ``most`` sentences of ``passage`` sharing the most words with ``question``,
    in the passage's order; ties go to the earlier sentence. None shares a word: the first."""
    asked = set(words(question))
    found = sentences(passage)
    if not found:
        return Quote("", 0.0)
    overlap = [len(asked & set(words(s))) for s in found]
    best = sorted(range(len(found)), key=lambda i: (-overlap[i], i))[:most]
    chosen = sorted(i for i in best if overlap[i] > 0) or [0]
    held = {w for i in chosen for w in words(found[i])}
    text = "".join(found[i] if _cjk_end(found[i]) else found[i] + " " for i in chosen).strip()
    return Quote(text, round(len(asked & held) / len(asked), 3) if asked else 0.0)


def _cjk_end(sentence: str) -> bool:
    return sentence[-1] in "。！？；"
