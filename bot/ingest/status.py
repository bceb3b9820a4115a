"""What an index holds and whether the corpus has moved on since, read cheaply: `stat` calls, the
manifest, and Chroma's own SQLite file; Chroma itself is started only for `stats`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.ingest.discover import Readable, can_read, discover, loadable, still_bad, under_unreadable
from bot.ingest.load import outdated_formats
from bot.ingest.manifest import corpus_key, manifest_on_server, open_manifest, open_manifest_name
from bot.store.chroma import CHROMA_DATABASE, VectorStore, embedded_chunk_count


def index_exists(settings: Settings) -> bool:
    manifest = settings.index / open_manifest_name(settings)
    if settings.chroma_url:  # the manifest is on the server (or still in a local file from before)
        return manifest.exists() or manifest_on_server(settings)
    return manifest.exists() and (settings.index / "chroma").exists()


@dataclass(frozen=True)
class IndexState:
    """What an index holds by its manifest, what its vector store holds, and where it came from."""

    documents: int  # files indexed (manifest)
    chunks: int  # chunks written for them (manifest)
    stored: int  # chunks the vector store holds
    corpus: str | None  # the folder it was built from (absolute), if it remembers

    @property
    def missing(self) -> int:
        """Chunks the manifest lists that the vector store lacks."""
        return max(0, self.chunks - self.stored)


def index_state(settings: Settings) -> IndexState | None:
    """The state of the index, or None when there is none. Cheap for an embedded index (the
    manifest and Chroma's SQLite file, no Chroma start); a server is asked for its count. A
    damaged file is a one-line IndexDamaged."""
    if not index_exists(settings):
        return None
    manifest = open_manifest(settings)
    try:
        documents, chunks, corpus = manifest.documents(), manifest.expected_chunks(), manifest.get("corpus")
    finally:
        manifest.close()
    return IndexState(documents, chunks, vector_count(settings), corpus)


def vector_count(settings: Settings) -> int:
    """Chunks the vector store holds: read from Chroma's SQLite file when embedded (0 when that
    file is gone), else (or when that read fails: damaged, or a schema we do not know) from the
    store itself, which reports damage as one line."""
    if not settings.chroma_url:
        if not (settings.index / "chroma" / CHROMA_DATABASE).exists():
            return 0
        count = stored_chunk_count(settings)
        if count is not None:
            return count
    return VectorStore(settings).count()


def ingest_command(settings: Settings, corpus: str | Path | None = None) -> str:
    """The `qabot ingest` command line that works on this index (from `corpus`, default the settings')."""
    command = f"qabot ingest --corpus {corpus or settings.corpus}"
    if settings.index != Path("index"):
        command += f" --index {settings.index}"
    return command


def foreign_corpus(settings: Settings, state: IndexState | None) -> str | None:
    """One line when the index was built from another folder than the settings' corpus (which
    a command that only answers must then not re-sync it to), else None."""
    if state is None or not state.corpus or state.corpus == corpus_key(settings.corpus):
        return None
    return (f"index built from {state.corpus}; not re-syncing it to {settings.corpus} "
            f"(run `{ingest_command(settings)}` to change that)")


def unusable(settings: Settings, state: IndexState) -> str | None:
    """Why questions cannot be answered from this index (one line: what is wrong and what to
    run), or None. An index with some of its vectors missing can still answer: see `lacking`."""
    corpus = state.corpus or settings.corpus
    if state.documents == 0:
        where = settings.chroma_url or settings.index
        return (f"the index at {where} is empty; put documents (.txt, .md, .rst, .html, .pdf) in {corpus} "
                f"and run `{ingest_command(settings, corpus)}`")
    if state.stored == 0:
        return (f"the vector store holds none of the index's {state.chunks} chunks{_lost_database(settings)}; "
                f"run `{ingest_command(settings, corpus)}` to embed them again")
    return None


def lacking(settings: Settings, state: IndexState) -> str | None:
    """One line when the vector store lacks some of the index's chunks, else None."""
    if not state.missing:
        return None
    corpus = state.corpus or settings.corpus
    return (f"the vector store lacks {state.missing} of the index's {state.chunks} chunks{_lost_database(settings)}; "
            f"answers may miss documents until `{ingest_command(settings, corpus)}` embeds them again")


def _lost_database(settings: Settings) -> str:
    database = settings.index / "chroma" / CHROMA_DATABASE
    return f" ({database} is missing)" if not settings.chroma_url and not database.exists() else ""


def corpus_changed(settings: Settings, readable: Readable = can_read) -> bool:
    """Cheap check (stat only) whether an ingest would change anything. `readable` is the
    permission check of discovery (see bot/ingest/discover.py)."""
    if not index_exists(settings):
        return True
    if not settings.corpus.exists():
        return False
    manifest = open_manifest(settings)
    try:
        known = manifest.files()
        skips = manifest.skipped()
    finally:
        manifest.close()
    unreadable: list[str] = []  # folders that cannot be listed: their indexed files are kept
    files = discover([settings.corpus], settings.corpus,
                     lambda s, r: unreadable.append(s) if s.endswith("/") else None, readable)
    indexed = {s for s in known if not Path(s).is_absolute() and not under_unreadable(s, unreadable)}

    if {f.source for f in files} != indexed:
        # Sources that were skipped never enter the manifest's files: don't loop on them.
        unknown = {f.source for f in files} - set(known)
        gone = indexed - {f.source for f in files}
        if gone or any(loadable(f) and not still_bad(f, skips, readable) for f in files if f.source in unknown):
            return True
    for f in files:
        row = known.get(f.source)
        if row is not None and (row["state"] != "done" or row["size"] != f.size or row["mtime_ns"] != f.mtime_ns) \
                and not (row["state"] == "done" and still_bad(f, skips, readable)):
            return True
    return False


def nothing_to_do(settings: Settings, readable: Readable = can_read) -> bool:
    """True when a stat of the corpus shows nothing to index, on an embedded index built with
    these chunking settings (a server's collection can lose data under us: always checked)."""
    if settings.chroma_url or not index_exists(settings):
        return False
    manifest = open_manifest(settings)
    try:
        stored = manifest.get("chunking") or {}
        outdated = outdated_formats(manifest.get("extraction"))
        expected = manifest.expected_chunks()
    finally:
        manifest.close()
    if settings.chunk_size not in (None, stored.get("size")) or \
            settings.chunk_overlap not in (None, stored.get("overlap")):
        return False
    if outdated:
        return False  # text made by an older extraction: the full path reads those files again
    return stored_chunk_count(settings) == expected and not corpus_changed(settings, readable)


def stored_chunk_count(settings: Settings) -> int | None:
    """The collection's chunk count read straight from Chroma's SQLite file, without starting
    Chroma; None when unknown (the caller then takes the slow, sure path)."""
    return embedded_chunk_count(settings.index / "chroma" / CHROMA_DATABASE, settings.collection)


def stats(settings: Settings) -> dict:
    manifest = open_manifest(settings)
    try:
        files = manifest.files()
        embedding = manifest.get("embedding") or {}
        info = {
            "documents": sum(1 for r in files.values() if r["state"] == "done"),
            "chunks": vector_count(settings),
            "manifest_chunks": manifest.expected_chunks(),  # what the vector store should hold
            "corpus": manifest.get("corpus"),
            "index_bytes": _dir_size(settings.index) if not settings.chroma_url else None,
            "index": str(settings.index),
            "chroma_url": settings.chroma_url,
            "collection": settings.collection,
            "embedding_model": embedding.get("model"),
            "precision": embedding.get("precision"),
            "chunking": manifest.get("chunking"),
            "last_ingest": manifest.get("last_ingest"),
        }
    finally:
        manifest.close()
    return info


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total
