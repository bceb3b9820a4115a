"""Crash repair and starting over.

A file's manifest row is marked `pending` (or `deleting`) before Chroma is touched and `done`
after; chunk ids are deterministic, so writes are upserts. `repair` redoes every row that is not
`done` and deletes chunks the manifest cannot explain: no duplicates, no orphans, no gaps.
"""
from __future__ import annotations

import shutil

from bot.config import Settings
from bot.errors import IndexProblem
from bot.ingest.chunk import source_key
from bot.ingest.manifest import Manifest, open_manifest
from bot.store.chroma import VectorStore


def repair(manifest: Manifest, store: VectorStore, known: dict) -> int:
    """Undo what an interrupted run left: rows not `done`, and chunks the manifest can't explain."""
    repaired = 0
    for source, row in known.items():
        if row["state"] != "done":
            store.delete_source(source)
            manifest.remove(source)  # re-added as new by this run if the file still exists
            repaired += 1
    if store.count() != manifest.expected_chunks():
        expected = {s: r["n_chunks"] for s, r in manifest.files().items()}
        by_source: dict[str, list[str]] = {}
        stray: list[str] = []
        for chunk in store.all_chunks(include_text=False):
            n = expected.get(chunk.source)
            index = int(chunk.id.rsplit("-", 1)[-1]) if "-" in chunk.id else -1
            if n is None or index >= n or not chunk.id.startswith(source_key(chunk.source)):
                stray.append(chunk.id)
            else:
                by_source.setdefault(chunk.source, []).append(chunk.id)
        store.delete_ids(stray)
        for source, n in expected.items():
            if len(by_source.get(source, [])) != n:  # chunks missing: re-embed this file
                store.delete_source(source)
                manifest.remove(source)
                repaired += 1
        repaired += 1 if stray else 0
    return repaired


def drop_index(settings: Settings) -> None:
    """Forget everything. The manifest is emptied first, in one transaction (deleting its files
    could leave a stale `-wal` beside a new database if killed halfway): if a crash comes before
    the collection is dropped, the next run finds chunks the manifest does not know and deletes
    them. The collection is dropped through the client, which caches open databases (deleting
    its files under it would break it)."""
    manifest = open_manifest(settings)
    try:
        manifest.db.execute("BEGIN IMMEDIATE")
        manifest.db.execute("DELETE FROM files")
        manifest.db.execute("DELETE FROM skipped")
        manifest.db.execute("DELETE FROM meta WHERE key != 'generation'")  # readers cache by it
        manifest.db.execute("COMMIT")
    finally:
        manifest.close()
    try:
        VectorStore(settings, create=False).client.delete_collection(settings.collection)
    except IndexProblem:
        raise
    except Exception:
        pass  # no collection yet
    shutil.rmtree(settings.index / "bm25", ignore_errors=True)
