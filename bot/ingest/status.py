"""What an index holds and whether the corpus has moved on since, read cheaply: `stat` calls, the
manifest, and Chroma's own SQLite file; Chroma itself is started only for `stats`.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from bot.config import Settings
from bot.ingest.discover import Readable, can_read, discover, loadable, still_bad
from bot.ingest.manifest import open_manifest, open_manifest_name
from bot.store.chroma import VectorStore


def index_exists(settings: Settings) -> bool:
    manifest = settings.index / open_manifest_name(settings)
    return manifest.exists() and (bool(settings.chroma_url) or (settings.index / "chroma").exists())


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
    files = discover([settings.corpus], settings.corpus, lambda s, r: None, readable)

    if {f.source for f in files} != {s for s in known if not Path(s).is_absolute()}:
        # Sources that were skipped never enter the manifest's files: don't loop on them.
        unknown = {f.source for f in files} - set(known)
        gone = {s for s in known if not Path(s).is_absolute()} - {f.source for f in files}
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
        expected = manifest.expected_chunks()
    finally:
        manifest.close()
    if settings.chunk_size not in (None, stored.get("size")) or \
            settings.chunk_overlap not in (None, stored.get("overlap")):
        return False
    return stored_chunk_count(settings) == expected and not corpus_changed(settings, readable)


def stored_chunk_count(settings: Settings) -> int | None:
    """The collection's chunk count read straight from Chroma's SQLite file, without starting
    Chroma. This leans on Chroma's private schema, so any surprise means "unknown" (None) and
    the caller takes the slow, sure path."""
    path = settings.index / "chroma" / "chroma.sqlite3"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute(
                "SELECT COUNT(e.id) FROM collections c JOIN segments s ON s.collection = c.id "
                "JOIN embeddings e ON e.segment_id = s.id WHERE c.name = ? AND s.scope = 'METADATA'",
                (settings.collection,),
            ).fetchone()
        finally:
            db.close()
        return int(row[0]) if row else None
    except (sqlite3.Error, OSError, ValueError, TypeError):
        return None


def stats(settings: Settings) -> dict:
    manifest = open_manifest(settings)
    try:
        files = manifest.files()
        embedding = manifest.get("embedding") or {}
        info = {
            "documents": sum(1 for r in files.values() if r["state"] == "done"),
            "chunks": VectorStore(settings).count(),
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
