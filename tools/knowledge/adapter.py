"""The knowledge tools a graph calls: search what the reader may see, and check an answer's
citations against what was found.

    adapter            action           effect   resource (attributes)                   output labels
    knowledge.search   knowledge.read   read     Knowledge (department, classification)  passages, context,
                                                                                          extracts: confidential
    knowledge.check    knowledge.read   read     Knowledge (department, classification)  —
    knowledge.quote    knowledge.read   read     Knowledge (department, classification)  answer: confidential

The search's resource is the reader's view: the department and the most secret
classification asked for; the check's and the quote's are the documents the answer cites, read from the
corpus (never from the model's words). The same Cedar policy decides both, so a run that
claims another department's view, or an answer that cites a document its asker may not
read, is denied by the gate even if retrieval were wrong.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from chamberlain.tools._adapter import Resource, ToolContext, tool
from chamberlain.tools._registry import ToolRegistry
from chamberlain.tools.knowledge.access import CLEARANCE, Reader, strictest
from chamberlain.tools.knowledge.corpus import Chunk, Document
from chamberlain.tools.knowledge.quote import quote, sentences
from chamberlain.tools.knowledge.retrieval import KnowledgeBase
from chamberlain.tools.knowledge.text import words

READ_ACTION = "knowledge.read"
SECRET = ("confidential",)  # passages may hold confidential text: only models and people cleared for it see it


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    department: str | None = Field(None, description="the asker's department; none: public documents only")
    clearance: list[str] = Field([], description="the asker's clearance labels ('confidential' opens secrets)")
    k: int = Field(3, ge=1, le=8)

    @property
    def reader(self) -> Reader:
        return Reader(department=self.department or None, cleared=CLEARANCE in self.clearance)


class Passage(BaseModel):
    n: int = Field(description="its number in the context, as the answer cites it")
    chunk_id: str
    document: str
    title: str
    text: str
    score: float
    similarity: float


class SearchResult(BaseModel):
    passages: list[Passage]
    chunk_ids: list[str]
    context: str = Field(description="the passages, numbered, for a prompt")
    extracts: str = Field(
        description="each passage's title and the sentences a quote from it would give, numbered: a short prompt"
    )
    confidence: float
    signals: dict[str, float]


class CheckRequest(BaseModel):
    answer: str = Field(max_length=4000)
    citations: list[int | str] = Field([], description="passage numbers, chunk IDs or document IDs")
    retrieved: list[str] = Field(description="the chunk IDs the search returned, in passage order")
    retrieval_confidence: float = Field(ge=0, le=1)


class Source(BaseModel):
    chunk_id: str
    document: str
    title: str


class CheckResult(BaseModel):
    sources: list[Source]
    valid: bool = Field(description="at least one citation, and every one among the retrieved passages")
    grounding: float = Field(description="the share of the answer's words found in the cited passages")
    confidence: float
    problems: list[str]


class QuoteRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    passage: int | str = Field(description="the number of the passage a model chose as the answer's")
    retrieved: list[str] = Field(description="the chunk IDs the search returned, in passage order")
    retrieval_confidence: float = Field(ge=0, le=1)


class QuoteResult(BaseModel):
    answer: str = Field(description="the chosen passage's sentences that answer the question, verbatim")
    citations: list[int]
    sources: list[Source]
    valid: bool = Field(description="the choice names a retrieved passage and the quote is in it")
    agreement: float = Field(description="1: the choice is the top-ranked passage; 0.5: its document; 0: neither")
    coverage: float = Field(description="the share of the question's words the quote holds")
    grounding: float = Field(description="1 when the quote is verbatim in the cited passage")
    confidence: float
    problems: list[str]


QUOTE_WEIGHTS = {"retrieval": 0.4, "agreement": 0.3, "coverage": 0.3}  # set a priori, not fitted to the cases


def knowledge_tools(knowledge: KnowledgeBase) -> ToolRegistry:
    """``knowledge.search``, ``knowledge.check`` and ``knowledge.quote`` over ``knowledge``."""

    def view(args: SearchRequest) -> Resource:
        reader = args.reader
        attributes = {"department": reader.department or "", "classification": reader.ceiling}
        return Resource("Knowledge", reader.department or "public", attributes)

    def cited(args: CheckRequest) -> Resource:
        documents = _documents(knowledge, [c for c in _resolve(knowledge, args) if c is not None])
        return Resource("Knowledge", "+".join(sorted(d.id for d in documents)) or "none", strictest(documents))

    def chosen(args: QuoteRequest) -> Resource:
        chunk = _passage(knowledge, args.passage, args.retrieved)
        documents = [chunk.document] if chunk else []
        return Resource("Knowledge", "+".join(d.id for d in documents) or "none", strictest(documents))

    @tool(
        "knowledge.search",
        action=READ_ACTION,
        resource=view,
        labels={"passages": SECRET, "context": SECRET, "extracts": SECRET},
    )
    async def search(args: SearchRequest, ctx: ToolContext) -> SearchResult:
        """Find the passages that answer a question, among the documents the asker may read."""
        found = knowledge.search(args.query, args.reader, k=args.k)
        passages = [
            Passage(
                n=n,
                chunk_id=h.chunk.id,
                document=h.chunk.document.id,
                title=h.chunk.document.title,
                text=h.chunk.text,
                score=h.score,
                similarity=h.similarity,
            )
            for n, h in enumerate(found.hits, start=1)
        ]
        context = "\n\n".join(f"[{p.n}] {p.title}\n{p.text}" for p in passages)
        extracts = "\n".join(f"[{p.n}] {p.title}: {quote(args.query, p.text).text}" for p in passages)
        return SearchResult(
            passages=passages,
            chunk_ids=[p.chunk_id for p in passages],
            context=context,
            extracts=extracts,
            confidence=found.confidence,
            signals=found.signals,
        )

    @tool("knowledge.check", action=READ_ACTION, resource=cited)
    async def check(args: CheckRequest, ctx: ToolContext) -> CheckResult:
        """Validate an answer's citations against the retrieved passages and score its grounding."""
        resolved = _resolve(knowledge, args)
        pairs = zip(args.citations, resolved, strict=True)
        problems = [f"citation {c!r} names no passage" for c, r in pairs if r is None]
        chunks = [r for r in resolved if r is not None]
        problems += [f"{c.id} was not among the retrieved passages" for c in chunks if c.id not in args.retrieved]
        if not args.citations:
            problems.append("the answer cites nothing")
        if not args.answer.strip():
            problems.append("the answer is empty")
        valid = not problems
        said, backing = set(words(args.answer)), {w for c in chunks for w in words(c.searchable)}
        grounding = round(len(said & backing) / len(said), 3) if said else 0.0
        confidence = round(0.5 * args.retrieval_confidence + 0.5 * grounding, 3) if valid else 0.0
        sources = [Source(chunk_id=c.id, document=c.document.id, title=c.document.title) for c in _unique(chunks)]
        return CheckResult(sources=sources, valid=valid, grounding=grounding, confidence=confidence, problems=problems)

    @tool("knowledge.quote", action=READ_ACTION, resource=chosen, labels={"answer": SECRET})
    async def quote_passage(args: QuoteRequest, ctx: ToolContext) -> QuoteResult:
        """Answer with the sentences of the passage a model chose, quoted, and score the answer:
        retrieval confidence, agreement of the choice with the ranking, and the question's
        words the quote holds — 0 unless the choice is a retrieved passage and the quote is in it."""
        chunk = _passage(knowledge, args.passage, args.retrieved)
        if chunk is None:
            problem = f"passage {args.passage!r} is not among the {len(args.retrieved)} retrieved"
            return QuoteResult(
                answer="", citations=[], sources=[], valid=False, agreement=0, coverage=0, grounding=0,
                confidence=0, problems=[problem],
            )  # fmt: skip
        n = args.retrieved.index(chunk.id) + 1
        quoted = quote(args.question, chunk.text)
        problems = [] if quoted.text else ["the passage has no text to quote"]
        grounding = 1.0 if quoted.text and all(s in chunk.text for s in sentences(quoted.text)) else 0.0
        if quoted.text and not grounding:
            problems.append("the quote is not verbatim in the passage")
        top = knowledge.by_id.get(args.retrieved[0])
        agreement = 1.0 if n == 1 else 0.5 if top is not None and top.document.id == chunk.document.id else 0.0
        signals = {"retrieval": args.retrieval_confidence, "agreement": agreement, "coverage": quoted.coverage}
        valid = not problems
        confidence = round(sum(QUOTE_WEIGHTS[k] * signals[k] for k in QUOTE_WEIGHTS), 3) if valid else 0.0
        return QuoteResult(
            answer=quoted.text,
            citations=[n],
            sources=[Source(chunk_id=chunk.id, document=chunk.document.id, title=chunk.document.title)],
            valid=valid,
            agreement=agreement,
            coverage=quoted.coverage,
            grounding=grounding,
            confidence=confidence,
            problems=problems,
        )

    return ToolRegistry([search, check, quote_passage])


def _passage(knowledge: KnowledgeBase, passage: int | str, retrieved: list[str]) -> Chunk | None:
    """The retrieved chunk a passage number names (from 1), else none: never a chunk the search
    did not return, whatever the model wrote."""
    text = str(passage).strip().strip("[]")
    n = int(text) if text.isdigit() else 0
    return knowledge.by_id.get(retrieved[n - 1]) if 1 <= n <= len(retrieved) else None


def _resolve(knowledge: KnowledgeBase, args: CheckRequest) -> list[Chunk | None]:
    """Each citation's chunk: a passage number counts in ``retrieved``; an ID names a chunk, or
    a document (then its retrieved chunk, else its first)."""
    out: list[Chunk | None] = []
    for citation in args.citations:
        text = str(citation).strip().strip("[]")
        if text.isdigit():
            n = int(text)
            out.append(knowledge.by_id.get(args.retrieved[n - 1]) if 1 <= n <= len(args.retrieved) else None)
        elif text in knowledge.by_id:
            out.append(knowledge.by_id[text])
        elif text in knowledge.documents:
            mine = [c for c in args.retrieved if c.split("#")[0] == text]
            out.append(knowledge.by_id.get(mine[0] if mine else f"{text}#1"))
        else:
            out.append(None)
    return out


def _documents(knowledge: KnowledgeBase, chunks: list[Chunk]) -> list[Document]:
    return list({c.document.id: c.document for c in chunks}.values())


def _unique(chunks: list[Chunk]) -> list[Chunk]:
    return list({c.id: c for c in chunks}.values())
