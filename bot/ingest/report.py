"""What an ingest run tells its caller: the report, the removals it asks to confirm, and its
progress (chunks written against an exact-where-known total)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bot.schema import Chunk


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    chunks_embedded: int = 0
    chunks_total: int = 0
    repaired: int = 0
    seconds: float = 0.0
    documents: int | None = None  # files in the index after the run (None: not known)
    corpus_empty: bool = False  # the corpus holds no supported file: nothing was done

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted or self.repaired)

    def summary_line(self) -> str:
        files = self.added + self.updated + self.unchanged
        repaired = f", {self.repaired} repaired" if self.repaired else ""
        return (
            f"{files} file{'s' if files != 1 else ''} indexed: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.deleted} deleted, {len(self.skipped)} skipped{repaired}; "
            f"{self.chunks_embedded} chunk{'s' if self.chunks_embedded != 1 else ''} embedded, "
            f"{self.chunks_total} in index; {self.seconds:.1f} s"
        )


@dataclass
class Removal:
    """What an ingest is about to remove, when that is every document of the index or most of
    them: handed to the `confirm_removal` callback before anything is deleted."""

    removing: int
    documents: int
    corpus: str  # the folder being ingested (absolute)
    built_from: str | None  # the folder the index was built from, if it remembers

    def what(self) -> str:
        """"all 8 documents of the index (they are not in /abs/corpus)" and the like."""
        what = (f"all {self.documents} documents" if self.removing == self.documents
                else f"{self.removing} of the {self.documents} documents")
        if self.built_from and self.built_from != self.corpus:
            where = f"it was built from {self.built_from}, not {self.corpus}"
        else:
            where = f"they are not in {self.corpus}"
        return f"{what} of the index ({where})"

    def describe(self) -> str:
        return f"this ingest would remove {self.what()}"


ConfirmFn = Callable[[Removal], bool]


def sweeping(removing: int, documents: int) -> bool:
    """Whether removing this many of the index's documents needs confirming: all, or more than half."""
    return removing > 0 and (removing == documents or 2 * removing > documents)


@dataclass
class Progress:
    """Chunks written so far, and an estimate of the total: exact for the files loaded, estimated
    for the rest from the chunks per byte seen so far (`guess_per_byte` before any)."""

    bytes_left: int
    guess_per_byte: float
    seen_bytes: int = 0
    seen_chunks: int = 0
    written: int = 0
    waiting: int = 0  # loaded, not written yet
    waiting_chars: int = 0  # their text

    def loaded(self, size: int, chunks: list[Chunk]) -> None:
        self.seen_bytes += size
        self.seen_chunks += len(chunks)
        self.waiting += len(chunks)
        self.waiting_chars += sum(len(c.text) for c in chunks)

    def wrote(self, chunks: list[Chunk]) -> None:
        self.written += len(chunks)
        self.waiting -= len(chunks)
        self.waiting_chars -= sum(len(c.text) for c in chunks)

    def total(self) -> int:
        per_byte = self.seen_chunks / self.seen_bytes if self.seen_bytes else self.guess_per_byte
        return self.written + self.waiting + round(self.bytes_left * per_byte)
