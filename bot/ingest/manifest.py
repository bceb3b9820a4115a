"""The manifest: per-file state of an index (content hash, chunk count, `pending`/`done`) and the
index-wide settings (embedding model and precision, chunking, generation), in
`<index>/manifest.sqlite3`; and the lock that lets one ingest at a time write an index.

On a Chroma server the manifest is kept on the server instead (bot/store/server_manifest.py),
so that every machine sees the same one and several may ingest; `open_manifest` picks by mode.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from bot.config import Settings
from bot.embed import MODEL_NAME, resolve_precision
from bot.errors import IndexProblem, damaged, one_line
from bot.ingest.discover import SkipRecord, source_of
from bot.store.chroma import VectorStore
from bot.store.server_manifest import ServerManifest

# SQLite's primary result codes for a file that is not (or no longer) a database.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
SQLITE_BUSY, SQLITE_LOCKED = 5, 6


def sqlite_problem(path: Path, exc: sqlite3.Error) -> IndexProblem:
    """A SQLite failure on one of the index's files as one line naming the file: damaged (with
    the way out), locked, or otherwise unusable."""
    reason = one_line(exc)
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in reason or "not a database" in reason:
        return damaged(path, reason)
    if primary in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in reason:
        return IndexProblem(f"{path} is locked by another process ({reason}); try again when it is done")
    return IndexProblem(f"cannot use {path} ({reason})")


def _translated(method):
    """SQLite errors of a Manifest method become one-line IndexProblems naming the file."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise sqlite_problem(self.path, exc) from None

    return wrapper


class Manifest:
    """Per-file state and index-wide settings, in `<index>/manifest.sqlite3`. Any SQLite failure
    (a damaged or locked file) is a one-line `IndexProblem` naming the file."""

    shared = False  # one writer at a time (`ingest_lock`), so a run may repair every row

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise sqlite_problem(path, exc) from None
        try:
            self._create()
        except BaseException:
            self.db.close()
            raise

    @_translated
    def _create(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (source TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, "
            "mtime_ns INTEGER, n_chunks INTEGER, state TEXT, title TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        # Files that could not be indexed, by size+mtime: not read again until they change.
        self.db.execute("CREATE TABLE IF NOT EXISTS skipped (source TEXT PRIMARY KEY, size INTEGER, "
                        "mtime_ns INTEGER, reason TEXT)")

    @_translated
    def files(self) -> dict[str, sqlite3.Row]:
        self.db.row_factory = sqlite3.Row
        rows = self.db.execute("SELECT * FROM files").fetchall()
        return {r["source"]: r for r in rows}

    @_translated
    def set_file(self, source: str, sha256: str, size: int, mtime_ns: int, n_chunks: int,
                 state: str, title: str = "") -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source, sha256, size, mtime_ns, n_chunks, state, title),
        )

    @_translated
    def skipped(self) -> dict[str, SkipRecord]:
        rows = self.db.execute("SELECT source, size, mtime_ns, reason FROM skipped").fetchall()
        return {r[0]: SkipRecord(r[1], r[2], r[3]) for r in rows}

    @_translated
    def set_skipped(self, source: str, size: int, mtime_ns: int, reason: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)", (source, size, mtime_ns, reason))

    @_translated
    def clear_skipped(self, source: str) -> None:
        self.db.execute("DELETE FROM skipped WHERE source = ?", (source,))

    @_translated
    def set_state(self, source: str, state: str) -> None:
        self.db.execute("UPDATE files SET state = ? WHERE source = ?", (state, source))

    @_translated
    def touch(self, source: str, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE source = ?", (size, mtime_ns, source))

    @_translated
    def remove(self, source: str) -> None:
        self.db.execute("DELETE FROM files WHERE source = ?", (source,))

    @_translated
    def expected_chunks(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(n_chunks), 0) FROM files WHERE state = 'done'").fetchone()[0]

    @_translated
    def get(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if not row:
            return default
        try:
            return json.loads(row[0])
        except ValueError:
            raise damaged(self.path, f"unreadable {key} setting") from None

    @_translated
    def documents(self) -> int:
        """Files indexed (state `done`)."""
        return self.db.execute("SELECT COUNT(*) FROM files WHERE state = 'done'").fetchone()[0]

    @_translated
    def empty(self) -> None:
        """Forget every file and setting, in one transaction (the generation stays: readers cache by it)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM files")
            self.db.execute("DELETE FROM skipped")
            self.db.execute("DELETE FROM meta WHERE key != 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise

    @_translated
    def check(self) -> None:
        """Read every page (SQLite's quick_check): raises if the file is damaged anywhere."""
        result = self.db.execute("PRAGMA quick_check").fetchone()
        if not result or result[0] != "ok":
            raise damaged(self.path, " ".join(str(result[0] if result else "quick_check failed").split())[:200])

    @_translated
    def put(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @_translated
    def bump_generation(self) -> None:
        self.put("generation", self.get("generation", 0) + 1)

    def lock(self, scopes: list[str], on_wait: Callable[[], None] | None = None) -> None:
        """Nothing more to hold: `ingest_lock` already lets one ingest at a time write this file."""

    def close(self) -> None:
        self.db.close()


def open_manifest_name(settings: Settings) -> str:
    # Before the manifest moved onto the server, a server's collection had its own local file
    # (`manifest-<key>.sqlite3`); it is read once, to carry its rows over (`_carry_over`).
    return "manifest.sqlite3" if not settings.chroma_url else f"manifest-{_server_key(settings)}.sqlite3"


def bm25_cache_dir(settings: Settings) -> Path:
    """Where the bot caches its BM25 index: per server and collection when on a server (the
    cache is the bot machine's own; bot/qa/retrieve.py keys it by the server's manifest)."""
    return settings.index / ("bm25" if not settings.chroma_url else f"bm25-{_server_key(settings)}")


def open_manifest(settings: Settings) -> Manifest | ServerManifest:
    """The index's manifest: the local SQLite file, or the one kept on the Chroma server."""
    if not settings.chroma_url:
        return Manifest(settings.index / open_manifest_name(settings))
    manifest = ServerManifest(VectorStore(settings), settings.collection)
    legacy = settings.index / open_manifest_name(settings)
    if legacy.exists() and manifest.get("embedding") is None:
        _carry_over(Manifest(legacy), manifest)
    return manifest


def manifest_on_server(settings: Settings) -> bool:
    """Whether the Chroma server holds a manifest for the collection (any ingest has started),
    without creating anything there."""
    store = VectorStore(settings, create=False, missing_ok=True)
    return store.collection is not None and ServerManifest.exists(store, settings.collection)


def _carry_over(local: Manifest, server: ServerManifest) -> None:
    """Copy a local manifest of a server's collection (made before the manifest moved onto the
    server) into the server's: its `done` rows, skip records and settings; then the local file
    is no longer read. Rows not `done` are left out: the next ingest repairs what they covered."""
    try:
        for source, row in local.files().items():
            if row["state"] == "done":
                server.set_file(source, row["sha256"], row["size"], row["mtime_ns"], row["n_chunks"], "done",
                                row["title"] or "")
        for source, skip in local.skipped().items():
            server.set_skipped(source, skip.size, skip.mtime_ns, skip.reason)
        for key, value in local.db.execute("SELECT key, value FROM meta").fetchall():
            if key != "embedding":
                server.put(key, json.loads(value))
        if local.get("embedding") is not None:
            server.put("embedding", local.get("embedding"))  # last: it marks the carry-over as done
    finally:
        local.close()


def lease_scopes(settings: Settings, roots: list[Path], everything: bool) -> list[str]:
    """What an ingest of `roots` writes, as source prefixes ("" is the whole corpus)."""
    if everything or roots == [settings.corpus]:
        return [""]
    return [source_of(r, settings.corpus) for r in roots]


def _server_key(settings: Settings) -> str:
    return hashlib.sha1(f"{settings.chroma_url}|{settings.collection}".encode()).hexdigest()[:12]


@contextlib.contextmanager
def ingest_lock(index_dir: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """One ingest at a time per index; a second one waits (and says so)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(index_dir / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def corpus_key(corpus: Path) -> str:
    """How an index remembers its corpus: the folder's absolute path, symlinks resolved."""
    return str(Path(os.path.abspath(corpus)).resolve())


def embedding_settings_check(manifest: Manifest, settings: Settings) -> str:
    """The precision to embed with: the index's own if it has one. Refuse a real mismatch."""
    stored = manifest.get("embedding")
    if not stored:
        return resolve_precision(settings.precision)
    if stored.get("model") != MODEL_NAME:
        raise IndexProblem(
            f"the index was built with {stored.get('model')}, this qabot embeds with {MODEL_NAME}; "
            "run `qabot ingest --rebuild`"
        )
    if settings.precision != "auto" and settings.precision != stored.get("precision"):
        raise IndexProblem(
            f"the index was embedded in {stored.get('precision')}, but {settings.precision} was requested; "
            "run `qabot ingest --rebuild` to re-embed, or drop the precision setting"
        )
    return stored["precision"]
