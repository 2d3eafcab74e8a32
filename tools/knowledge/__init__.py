"""Permissioned knowledge: a corpus of manuals and tickets, hybrid retrieval that only ever
considers what the asker may read, and the tools a graph answers questions with.

``POLICIES`` holds the Cedar policy of the ``knowledge.read`` action: load it with the
deployment's own (``PolicyEngine.load(POLICIES)``).
"""

from pathlib import Path

from chamberlain.tools.knowledge.access import Reader, strictest
from chamberlain.tools.knowledge.adapter import READ_ACTION, knowledge_tools
from chamberlain.tools.knowledge.corpus import Chunk, CorpusError, Document, chunks_of, load_corpus, parse_document
from chamberlain.tools.knowledge.retrieval import Hit, KnowledgeBase, Retrieval

POLICIES = Path(__file__).with_name("policies")

__all__ = [
    "POLICIES",
    "READ_ACTION",
    "Chunk",
    "CorpusError",
    "Document",
    "Hit",
    "KnowledgeBase",
    "Reader",
    "Retrieval",
    "chunks_of",
    "knowledge_tools",
    "load_corpus",
    "parse_document",
    "strictest",
]
