"""Crash repair and starting over.

A file's manifest row is marked `pending` (or `deleting`) before Chroma is touched and `done`
after; chunk ids are deterministic, so writes are upserts. `repair` redoes every row that is not
`done` and deletes chunks the manifest cannot explain: no duplicates, no orphans, no gaps.
"""
from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

from bot.config import Settings
from bot.errors import IndexDamaged, IndexProblem, damaged, describe, one_line
from bot.ingest.chunk import source_key
from bot.ingest.manifest import Manifest, open_manifest, open_manifest_name
from bot.store.chroma import CHROMA_DATABASE, VectorStore, damage_reason, forget_embedded

log = logging.getLogger(__name__)


def repair(manifest: Manifest, store: VectorStore, known: dict, owned: Callable[[str], bool] | None = None) -> int:
    """Undo what an interrupted run left: rows not `done`, and chunks the manifest can't explain.

    `owned`: which sources this run may repair (None: all). A manifest on a Chroma server is
    written by several ingesters at once, each under a lease on its folders: a row `pending` in
    someone else's folder is their work in progress, not a crash, so only owned ones are redone."""
    owned = owned or (lambda source: True)
    repaired = 0
    for source, row in known.items():
        if row["state"] != "done" and owned(source):
            store.delete_source(source)
            manifest.remove(source)  # re-added as new by this run if the file still exists
            repaired += 1
    if store.count() != manifest.expected_chunks():
        chunks = store.all_chunks(include_text=False)
        # The manifest read *after* the scan: another ingester marks a file pending before it
        # writes its chunks, so every chunk seen in the scan has its row by now.
        rows = manifest.files()
        expected = {s: r["n_chunks"] for s, r in rows.items()}
        by_source: dict[str, list[str]] = {}
        stray: list[str] = []
        for chunk in chunks:
            if not owned(chunk.source):
                continue
            n = expected.get(chunk.source)
            index = int(chunk.id.rsplit("-", 1)[-1]) if "-" in chunk.id else -1
            if n is None or index >= n or not chunk.id.startswith(source_key(chunk.source)):
                stray.append(chunk.id)
            else:
                by_source.setdefault(chunk.source, []).append(chunk.id)
        store.delete_ids(stray)
        for source, n in expected.items():
            if owned(source) and rows[source]["state"] == "done" and len(by_source.get(source, [])) != n:
                store.delete_source(source)  # chunks missing: re-embed this file
                manifest.remove(source)
                repaired += 1
        repaired += 1 if stray else 0
    return repaired


def drop_index(settings: Settings) -> None:
    """Forget everything, whatever state the index is in.

    The careful way first: the manifest is emptied in one transaction (deleting its files could
    leave a stale `-wal` beside a new database if killed halfway): if a crash comes before the
    collection is dropped, the next run finds chunks the manifest does not know and deletes them.
    The collection is dropped through the client, which caches open databases (deleting its files
    under it would break it). Then both databases are read through (quick_check).

    If any of that fails (a damaged, truncated or unreadable file, a folder where a file should
    be), the files qabot owns in the index folder are deleted instead: the manifest (with its
    -wal/-shm), the embedded Chroma folder and the BM25 cache. Nothing else there is touched (the
    feedback databases, the lock). A server that cannot be reached is an error, not a reason to
    delete anything."""
    try:
        _drop_carefully(settings)
    except IndexProblem as exc:
        if settings.chroma_url and not isinstance(exc, IndexDamaged):
            raise  # the server: unreachable or refusing; nothing local is wrong
        _remove_owned_files(settings)
    except (sqlite3.Error, OSError, ValueError, RuntimeError):
        _remove_owned_files(settings)
    except Exception as exc:  # Chroma's own errors (InternalError, ...) on a broken embedded folder
        if settings.chroma_url:
            raise
        log.info("starting the index over by deleting its files (%s)", describe(exc))
        _remove_owned_files(settings)
    shutil.rmtree(settings.index / "bm25", ignore_errors=True)


def _drop_carefully(settings: Settings) -> None:
    manifest = open_manifest(settings)
    try:
        manifest.empty()
        manifest.check()
    finally:
        manifest.close()
    try:
        VectorStore(settings, create=False).client.delete_collection(settings.collection)
    except IndexProblem:
        raise
    except Exception as exc:
        if damage_reason(exc):
            raise
        # no collection yet (or gone): nothing to drop
    if not settings.chroma_url:
        _check_sqlite(settings.index / "chroma" / CHROMA_DATABASE)


def _check_sqlite(path: Path) -> None:
    """Read every page of an SQLite file (quick_check); raises IndexDamaged if any is bad."""
    if not path.exists():
        return
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise damaged(path, one_line(exc)) from None
    if not result or result[0] != "ok":
        raise damaged(path, str(result[0] if result else "quick_check failed")[:200])


def _remove_owned_files(settings: Settings) -> None:
    """Delete what qabot keeps in the index folder for this index, and nothing else."""
    name = open_manifest_name(settings)
    owned = [settings.index / (name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    if not settings.chroma_url:
        chroma = settings.index / "chroma"
        forget_embedded(chroma)
        owned.append(chroma)
    for path in owned:  # the manifest first: a crash after it leaves chunks the next run deletes
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
