"""Step 2, chunk: a `Document` → `Chunk`s that respect paragraph and sentence boundaries.

LangChain's recursive splitter does the splitting; we add what citations need: each chunk's
character offsets in the document text, its section heading and page.
"""
from __future__ import annotations

import hashlib

from langchain_text_splitters import RecursiveCharacterTextSplitter

from bot.ingest.load import Document
from bot.schema import Chunk

# Paragraphs first, then lines, then sentence ends, then words: a chunk only breaks mid-sentence
# when a single sentence is longer than the chunk size.
SEPARATORS = ["\n\n", "\n", r"(?<=[.!?…。])\s+", r"(?<=[;:])\s+", " ", ""]


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=min(chunk_overlap, chunk_size // 2),
        separators=SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        add_start_index=True,
    )


def source_key(source: str) -> str:
    """Stable id prefix of a document, so chunk ids are deterministic (re-runs upsert, never duplicate)."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def chunk_document(doc: Document, splitter: RecursiveCharacterTextSplitter) -> list[Chunk]:
    chunks = []
    key = source_key(doc.source)
    for i, piece in enumerate(splitter.create_documents([doc.text])):
        start = piece.metadata["start_index"]
        text = piece.page_content
        if start < 0:  # the splitter could not locate the piece: find it ourselves
            start = doc.text.find(text)
        chunks.append(
            Chunk(
                id=f"{key}-{i:05d}",
                text=text,
                source=doc.source,
                title=doc.title,
                section=doc.section_at(start),
                page=doc.page_at(start),
                start=start,
                end=start + len(text),
                headings=tuple((at - start, h) for at, h in doc.headings if start < at < start + len(text)),
                pages=tuple((at - start, p) for at, p in doc.pages if start < at < start + len(text)),
            )
        )
    return chunks
