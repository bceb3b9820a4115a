"""The data that flows between the steps: chunks in, answers out.

Every front end (CLI, chat, Discord, eval) consumes `Answer`; nothing else crosses module lines.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chunk:
    """A stored passage of a document, with where it came from."""

    id: str
    text: str
    source: str  # path relative to the corpus root (or absolute if outside it)
    title: str
    section: str | None = None  # nearest heading, where the format has headings
    page: int | None = None  # 1-based page, where the format has pages
    start: int = 0  # character offsets of `text` in the extracted document text
    end: int = 0
    # Headings and page breaks inside the passage, as (offset in `text`, heading or page), so a
    # citation names the section and page of its answering sentence, not the passage's first.
    headings: tuple = ()
    pages: tuple = ()

    def section_at(self, offset: int) -> str | None:
        return next((h for at, h in reversed(self.headings) if at <= offset), self.section)

    def page_at(self, offset: int) -> int | None:
        return next((p for at, p in reversed(self.pages) if at <= offset), self.page)


@dataclass
class Hit:
    """A chunk found by retrieval, with its scores."""

    chunk: Chunk
    score: float  # fused RRF score
    dense: float | None = None  # cosine similarity, when dense search found it
    bm25: float | None = None
    rank: int = 0


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation (chat session or Discord thread)."""

    question: str
    answer: str


@dataclass
class Citation:
    """A numbered source behind an answer; `[n]` markers in the answer text point here."""

    n: int
    source: str
    title: str
    section: str | None
    page: int | None
    quote: str  # the passage shown to the user
    start: int  # offsets of `quote` in the extracted document text
    end: int
    score: float
    # Offsets of the answering span inside `quote` (None: the whole quote / no span).
    span_start: int | None = None
    span_end: int | None = None


def citation_for(chunk: Chunk, n: int, score: float, span_start: int | None = None,
                 span_end: int | None = None) -> Citation:
    """The citation of `chunk` as source number `n`; the one place a Citation is built."""
    where = span_start or 0
    return Citation(n=n, source=chunk.source, title=chunk.title, section=chunk.section_at(where),
                    page=chunk.page_at(where), quote=chunk.text, start=chunk.start, end=chunk.end, score=round(float(score), 4),
                    span_start=span_start, span_end=span_end)


@dataclass
class Answer:
    question: str
    text: str  # the answer with inline [n] markers, or the refusal sentence
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    answerer: str = "extractive"  # "extractive" or "llm:<provider:model>"
    lead: str | None = None  # the short answer put in front of the sentence ("Rogozin — …"), if any
    chained: bool = False  # built from the hops of a multi-hop question, one cited sentence a hop
    fallback_reason: str | None = None  # why the configured LLM's answer was not used, if it was not
    standalone_question: str | None = None  # the follow-up after condensing, if it changed
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The passages retrieved for it, best first (what `eval` scores retrieval on).
    retrieved: list[Hit] = field(default_factory=list, repr=False)



REFUSAL_TEXT = "I couldn't find this in the documents."
