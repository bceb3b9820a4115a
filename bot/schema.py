"""The data that flows between the steps: chunks in, answers out.

Every front end (CLI, chat, Discord, eval) consumes `Answer`; nothing else crosses module lines.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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


@dataclass
class Answer:
    question: str
    text: str  # the answer with inline [n] markers, or the refusal sentence
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    answerer: str = "extractive"  # "extractive" or "llm:<provider:model>"
    standalone_question: str | None = None  # the follow-up after condensing, if it changed
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["citations"] = [asdict(c) for c in self.citations]
        return data


REFUSAL_TEXT = "I couldn't find this in the documents."
