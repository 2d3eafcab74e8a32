"""A knowledge corpus: Markdown documents with front matter, cut into chunks.

Each document is one ``*.md`` file whose name (without ``.md``) is its ID, beginning with a
YAML front matter block that says whose it is and how secret::

    ---
    title: AW-9 commissioning checklist
    department: field-service
    classification: internal      # public | internal | confidential
    product: AW-9
    ---

Chunks are whole paragraphs merged up to :data:`CHUNK_CHARS` characters (a longer paragraph
is cut at sentence ends), so a citation points at a passage a person can check at a glance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Classification = Literal["public", "internal", "confidential"]
CHUNK_CHARS = 450
_SENTENCE_END = re.compile(r"(?<=[。！？.!?])\s*")


class CorpusError(ValueError):
    """A document the corpus cannot hold; the message names the file, the line and the fix."""


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    department: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="the department that owns the document")
    classification: Classification
    product: str = Field(min_length=1)


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    department: str
    classification: Classification
    product: str
    text: str


@dataclass(frozen=True)
class Chunk:
    """A passage of a document; ``id`` is ``<document>#<n>``, counted from 1."""

    id: str
    document: Document
    text: str

    @property
    def searchable(self) -> str:
        """What retrieval matches: the document's title and product, then the passage."""
        return f"{self.document.title} ({self.document.product})\n{self.text}"


def load_corpus(folder: str | Path) -> list[Document]:
    """Every ``*.md`` document in ``folder``, in name order; refuses an empty folder."""
    files = sorted(Path(folder).glob("*.md"))
    if not files:
        raise CorpusError(f"{folder}: no *.md documents; add Markdown files with front matter (see this module)")
    return [parse_document(path.stem, path.read_text(encoding="utf-8"), source=str(path)) for path in files]


def parse_document(doc_id: str, text: str, *, source: str = "<document>") -> Document:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise CorpusError(f"{source}:1: no front matter; start the file with '---', the fields, and '---'")
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        raise CorpusError(f"{source}:1: the front matter is not closed; add a line '---' after its fields") from None
    try:
        raw = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise CorpusError(f"{source}:{line}: the front matter is not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise CorpusError(f"{source}:2: the front matter must be 'field: value' lines")
    try:
        meta = FrontMatter.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "front matter"
        line = next((i + 1 for i, text_line in enumerate(lines[:end]) if text_line.startswith(f"{name}:")), 1)
        fields = ", ".join(FrontMatter.model_fields)
        raise CorpusError(f"{source}:{line}: {name}: {first['msg']} (the fields are {fields})") from None
    body = "\n".join(lines[end + 1 :]).strip()
    if not body:
        raise CorpusError(f"{source}:{end + 2}: the document has no text after its front matter")
    return Document(id=doc_id, text=body, **meta.model_dump())


def chunks_of(document: Document, size: int = CHUNK_CHARS) -> list[Chunk]:
    """Paragraphs merged up to ``size`` characters; a longer paragraph cut at sentence ends."""
    pieces: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", document.text)):
        pieces += _sentences(paragraph, size) if len(paragraph) > size else [paragraph] if paragraph else []
    merged: list[str] = []
    for piece in pieces:
        if merged and len(merged[-1]) + len(piece) + 2 <= size:
            merged[-1] = f"{merged[-1]}\n\n{piece}"
        else:
            merged.append(piece)
    return [Chunk(id=f"{document.id}#{n}", document=document, text=text) for n, text in enumerate(merged, start=1)]


def _sentences(paragraph: str, size: int) -> list[str]:
    out: list[str] = []
    for sentence in (s for s in _SENTENCE_END.split(paragraph) if s):
        if out and len(out[-1]) + len(sentence) + 1 <= size:
            out[-1] = f"{out[-1]} {sentence}" if sentence[0].isascii() else out[-1] + sentence
        else:
            out.append(sentence)
    return out
