"""Step 3, index: corpus files → chunks → vectors in a Chroma collection, incrementally.

A SQLite manifest beside the collection records, per file, its content hash and chunk count.
Why not LangChain's `index()` + record manager: it hashes *chunks*, so every unchanged file would
still be read, parsed and split on every run (too slow for the ≤ 2 s re-ingest goal on a large
corpus), and it has no notion of a file whose new version fails to load (we keep the old chunks).
Here an unchanged file costs one `stat`.

Crash safety: a file's row is marked `pending` (or `deleting`) *before* Chroma is touched and
`done` after; chunk ids are deterministic, so writes are upserts. The next run redoes every row
that is not `done`, and a count check catches anything else: no duplicates, no orphans, no gaps.
tests/test_crash.py fails an ingest before each of its writes, and SIGKILLs real ones.

Concurrency: one ingest at a time per index (a file lock; the second waits). Readers (the bot,
`ask`, a second client) keep working during an ingest and see each file's old or new chunks,
never none: a changed file's chunks are overwritten in place, then the surplus is deleted.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from bot.config import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, Settings
from bot.load import MAX_FILE_BYTES, LoadError, is_supported, load_document
from bot.schema import Chunk

UPSERT_BATCH = 512  # chunks per Chroma write; also the unit of progress and crash loss
EMBED_GROUP = 1024  # chunks embedded together: token-length batching wastes 1.9% on padding at 1024, 6.5% at 256


class IndexError_(Exception):
    """A problem with the index the user must act on; the message is one line."""


class CorpusMissing(IndexError_):
    pass


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

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted or self.repaired)

    def summary_line(self) -> str:
        files = self.added + self.updated + self.unchanged
        repaired = f", {self.repaired} repaired" if self.repaired else ""
        return (
            f"{files} file{'s' if files != 1 else ''} indexed: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.deleted} deleted, {len(self.skipped)} skipped{repaired}; "
            f"{self.chunks_embedded} chunks embedded, {self.chunks_total} in index; {self.seconds:.1f} s"
        )


# --- the manifest -------------------------------------------------------------------------------

class Manifest:
    """Per-file state and index-wide settings, in `<index>/manifest.sqlite3`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (source TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, "
            "mtime_ns INTEGER, n_chunks INTEGER, state TEXT, title TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        # Files that could not be indexed, by size+mtime: not read again until they change.
        self.db.execute("CREATE TABLE IF NOT EXISTS skipped (source TEXT PRIMARY KEY, size INTEGER, "
                        "mtime_ns INTEGER, reason TEXT)")

    def files(self) -> dict[str, sqlite3.Row]:
        self.db.row_factory = sqlite3.Row
        rows = self.db.execute("SELECT * FROM files").fetchall()
        return {r["source"]: r for r in rows}

    def set_file(self, source: str, sha256: str, size: int, mtime_ns: int, n_chunks: int,
                 state: str, title: str = "") -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source, sha256, size, mtime_ns, n_chunks, state, title),
        )

    def skipped(self) -> dict[str, tuple[int, int, str]]:
        rows = self.db.execute("SELECT source, size, mtime_ns, reason FROM skipped").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def set_skipped(self, source: str, size: int, mtime_ns: int, reason: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)", (source, size, mtime_ns, reason))

    def clear_skipped(self, source: str) -> None:
        self.db.execute("DELETE FROM skipped WHERE source = ?", (source,))

    def set_state(self, source: str, state: str) -> None:
        self.db.execute("UPDATE files SET state = ? WHERE source = ?", (state, source))

    def touch(self, source: str, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE source = ?", (size, mtime_ns, source))

    def remove(self, source: str) -> None:
        self.db.execute("DELETE FROM files WHERE source = ?", (source,))

    def expected_chunks(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(n_chunks), 0) FROM files WHERE state = 'done'").fetchone()[0]

    def get(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def bump_generation(self) -> None:
        self.put("generation", self.get("generation", 0) + 1)

    def close(self) -> None:
        self.db.close()


# --- the vector store ---------------------------------------------------------------------------

class VectorStore:
    """The Chroma collection: embedded under `<index>/chroma`, or a Chroma server."""

    def __init__(self, settings: Settings, create: bool = True) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        self.url = settings.chroma_url
        if settings.chroma_url:
            from urllib.parse import urlparse

            url = urlparse(settings.chroma_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise IndexError_(f"not a Chroma server URL: {settings.chroma_url!r} (expected http://host:port)")
            try:
                self.client = chromadb.HttpClient(
                    host=url.hostname, port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https", settings=chroma_settings,
                    headers={"Authorization": f"Bearer {settings.chroma_token}"} if settings.chroma_token else None,
                )
                self.client.heartbeat()
            except Exception as exc:
                if _is_auth_error(exc):
                    raise _refused(settings.chroma_url, exc) from None
                raise IndexError_(f"cannot reach the Chroma server at {settings.chroma_url} ({_one_line(exc)})") from None
        else:
            self.client = chromadb.PersistentClient(path=str(settings.index / "chroma"), settings=chroma_settings)
        # We always pass our own vectors: embedding_function=None keeps Chroma from ever
        # downloading its default ONNX model.
        with self._server_call():
            if create:
                try:
                    self.collection = self.client.get_or_create_collection(
                        settings.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
                    )
                except IndexError_:
                    raise
                except Exception as exc:
                    if _is_connection_error(exc):
                        raise
                    raise IndexError_(f"cannot open the collection {settings.collection!r}: {_one_line(exc)}") from None
            else:
                self.collection = self.client.get_collection(settings.collection, embedding_function=None)

    @contextmanager
    def _server_call(self) -> Iterator[None]:
        """A server that goes away mid-run is a one-line error, not a traceback. Whatever was
        half written is repaired by the next ingest (see the module docstring)."""
        try:
            yield
        except Exception as exc:
            if self.url and _is_connection_error(exc):
                raise IndexError_(f"lost the connection to the Chroma server at {self.url} "
                                  f"({_one_line(exc)}); run the command again once it is back") from None
            if self.url and _is_auth_error(exc):
                raise _refused(self.url, exc) from None
            raise

    def count(self) -> int:
        with self._server_call():
            return self.collection.count()

    def upsert(self, chunks: list[Chunk], vectors) -> None:
        for i in range(0, len(chunks), UPSERT_BATCH):
            part = chunks[i:i + UPSERT_BATCH]
            with self._server_call():
                self.collection.upsert(
                    ids=[c.id for c in part],
                    embeddings=vectors[i:i + UPSERT_BATCH],
                    documents=[c.text for c in part],
                    metadatas=[chunk_metadata(c) for c in part],
                )

    def delete_source(self, source: str) -> None:
        with self._server_call():
            self.collection.delete(where={"source": source})

    def delete_source_except(self, source: str, keep: set[str]) -> None:
        """Delete a source's chunks other than `keep` (what is left of an older, longer version)."""
        with self._server_call():
            ids = self.collection.get(where={"source": source}, include=[])["ids"]
        self.delete_ids([i for i in ids if i not in keep])

    def delete_ids(self, ids: list[str]) -> None:
        for i in range(0, len(ids), UPSERT_BATCH):
            with self._server_call():
                self.collection.delete(ids=ids[i:i + UPSERT_BATCH])

    def all_chunks(self, include_text: bool = True) -> list[Chunk]:
        out: list[Chunk] = []
        total = self.count()
        include = ["metadatas", "documents"] if include_text else ["metadatas"]
        for offset in range(0, total, 5000):
            with self._server_call():
                got = self.collection.get(include=include, limit=5000, offset=offset)
            docs = got.get("documents") or [""] * len(got["ids"])
            out.extend(chunk_from_record(i, d or "", m) for i, d, m in zip(got["ids"], docs, got["metadatas"]))
        return out

    def query(self, vector, k: int) -> list[tuple[Chunk, float]]:
        """Top-k chunks by cosine similarity (1 - Chroma's cosine distance). Chroma returns
        fewer when the collection holds fewer (no count() first: that was 2 ms a question)."""
        with self._server_call():
            got = self.collection.query(query_embeddings=[vector], n_results=k,
                                        include=["metadatas", "documents", "distances"])
        return [
            (chunk_from_record(i, d, m), 1.0 - dist)
            for i, d, m, dist in zip(got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0])
        ]


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:
        pass
    return isinstance(exc, ConnectionError)


def _is_auth_error(exc: BaseException) -> bool:
    from chromadb import errors

    if isinstance(exc, (errors.AuthorizationError, errors.ChromaAuthError)):
        return True
    # A proxy's refusal reaches us as a generic error carrying its status or reason.
    return re.search(r"\b(401|403|unauthorized|forbidden)\b", str(exc), re.IGNORECASE) is not None


def _refused(url: str, exc: BaseException) -> IndexError_:
    return IndexError_(f"the Chroma server at {url} refused the request ({_one_line(exc)}); "
                       "set QABOT_CHROMA_TOKEN to its token")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def chunk_metadata(chunk: Chunk) -> dict:
    meta = {"source": chunk.source, "title": chunk.title, "start": chunk.start, "end": chunk.end}
    if chunk.section:
        meta["section"] = chunk.section
    if chunk.page is not None:
        meta["page"] = chunk.page
    return meta


def chunk_from_record(chunk_id: str, text: str, meta: dict) -> Chunk:
    return Chunk(
        id=chunk_id, text=text, source=meta.get("source", ""), title=meta.get("title", ""),
        section=meta.get("section"), page=meta.get("page"),
        start=int(meta.get("start", 0)), end=int(meta.get("end", 0)),
    )


# --- corpus discovery ---------------------------------------------------------------------------

@dataclass
class CorpusFile:
    path: Path
    source: str
    size: int
    mtime_ns: int


def discover(roots: list[Path], corpus: Path, on_skip: Callable[[str, str], None]) -> list[CorpusFile]:
    """Supported files under `roots`, following symlinks but never looping."""
    found: dict[str, CorpusFile] = {}
    corpus_abs = corpus.resolve()

    def add(path: Path) -> None:
        try:
            st = path.stat()
        except OSError as exc:
            on_skip(source_of(path, corpus_abs), f"cannot read ({exc.strerror or exc})")
            return
        source = source_of(path, corpus_abs)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, /dev/zero never end it
            on_skip(source, "not a regular file")
            return
        found[source] = CorpusFile(path, source, st.st_size, st.st_mtime_ns)

    for root in roots:
        if root.is_file():
            add(root)
            continue
        seen_dirs: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second way in
                dirnames[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if not os.access(dirpath, os.R_OK | os.X_OK):
                on_skip(source_of(Path(dirpath), corpus_abs), "permission denied")
                continue
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or not is_supported(path):
                    continue
                add(path)
    return sorted(found.values(), key=lambda f: f.source)


def source_of(path: Path, corpus_abs: Path) -> str:
    """The name a file is cited by: its path relative to the corpus (lexically, so a symlinked
    file keeps its own name), or the absolute path for files outside the corpus."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(corpus_abs).as_posix()
    except ValueError:
        try:
            return absolute.relative_to(Path(os.path.abspath(corpus_abs))).as_posix()
        except ValueError:
            return absolute.as_posix()


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- ingest -------------------------------------------------------------------------------------

@contextmanager
def ingest_lock(index_dir: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """One ingest at a time per index; a second one waits (and says so)."""
    from filelock import FileLock, Timeout

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


def open_manifest_name(settings: Settings) -> str:
    # A server's collection gets its own manifest, so one index dir can serve several servers.
    return "manifest.sqlite3" if not settings.chroma_url else f"manifest-{_server_key(settings)}.sqlite3"


def open_manifest(settings: Settings) -> Manifest:
    return Manifest(settings.index / open_manifest_name(settings))


def _server_key(settings: Settings) -> str:
    import hashlib

    return hashlib.sha1(f"{settings.chroma_url}|{settings.collection}".encode()).hexdigest()[:12]


def embedding_settings_check(manifest: Manifest, settings: Settings) -> str:
    """The precision to embed with: the index's own if it has one. Refuse a real mismatch."""
    from bot.embed import MODEL_NAME, resolve_precision

    stored = manifest.get("embedding")
    if not stored:
        return resolve_precision(settings.precision)
    if stored.get("model") != MODEL_NAME:
        raise IndexError_(
            f"the index was built with {stored.get('model')}, this qabot embeds with {MODEL_NAME}; "
            "run `qabot ingest --rebuild`"
        )
    if settings.precision != "auto" and settings.precision != stored.get("precision"):
        raise IndexError_(
            f"the index was embedded in {stored.get('precision')}, but {settings.precision} was requested; "
            "run `qabot ingest --rebuild` to re-embed, or drop the precision setting"
        )
    return stored["precision"]


def ingest(
    settings: Settings,
    paths: list[Path] | None = None,
    rebuild: bool = False,
    embedder=None,
    on_skip: Callable[[str, str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    missing_ok: bool = False,
) -> IngestReport:
    """Bring the index in line with the corpus (or with `paths` inside/outside it). With
    `missing_ok`, a path that does not exist is indexed as empty (its chunks are deleted)."""
    started = time.perf_counter()
    report = IngestReport()

    def skip(source: str, reason: str) -> None:
        report.skipped.append((source, reason))
        if on_skip:
            on_skip(source, reason)

    corpus = settings.corpus
    roots = [Path(p) for p in paths] if paths else [corpus]
    for root in roots:
        if not root.exists() and not missing_ok:
            raise CorpusMissing(f"corpus path not found: {root}")

    if not rebuild and not paths and _nothing_to_do(settings):
        # Stat-only fast path: opening Chroma alone costs seconds. Interrupted runs leave rows
        # that are not `done`, which `corpus_changed` sees, so repairs still happen.
        manifest = open_manifest(settings)
        try:
            known, known_skips = manifest.files(), manifest.skipped()
            report.unchanged = sum(1 for r in known.values() if r["state"] == "done")
            report.chunks_total = manifest.expected_chunks()
        finally:
            manifest.close()
        # Still say what is not indexed, as the full path does, without reading those files.
        for f in discover([settings.corpus], settings.corpus, skip):
            if _still_bad(f, known_skips):
                keeping = "; keeping the previously indexed version" if f.source in known else ""
                skip(f.source, known_skips[f.source][2] + keeping)
                report.unchanged -= 1 if keeping else 0
        report.seconds = time.perf_counter() - started
        return report

    with ingest_lock(settings.index, on_wait):
        if rebuild:
            _drop_index(settings)
        manifest = open_manifest(settings)
        try:
            store = VectorStore(settings)
            precision = embedding_settings_check(manifest, settings)
            if embedder is None:
                from bot.embed import Embedder

                embedder = Embedder(precision=precision)
            elif embedder.precision != precision:
                raise IndexError_(f"embedder precision {embedder.precision} != index precision {precision}")

            known = manifest.files()
            report.repaired = _repair(manifest, store, known)
            known = manifest.files()
            known_skips = manifest.skipped()

            files = discover(roots, corpus, skip)
            present = {f.source for f in files}
            scope_prefixes = [source_of(r, corpus.resolve()) for r in roots]

            for source in known_skips:
                if source not in present and _in_scope(source, scope_prefixes, roots == [corpus]):
                    manifest.clear_skipped(source)

            # Deleted: known files inside the scanned roots that are gone.
            for source in sorted(known):
                if source not in present and _in_scope(source, scope_prefixes, roots == [corpus]):
                    manifest.set_state(source, "deleting")
                    store.delete_source(source)
                    manifest.remove(source)
                    report.deleted += 1

            # Changed or new: decided by size+mtime first, content hash second. New chunking
            # settings re-chunk every file (the setting is saved only once all are done).
            stored = manifest.get("chunking") or {}
            chunking = {"size": settings.chunk_size or stored.get("size") or DEFAULT_CHUNK_SIZE,
                        "overlap": settings.chunk_overlap if settings.chunk_overlap is not None
                        else stored.get("overlap", DEFAULT_CHUNK_OVERLAP)}
            settings = settings.with_(chunk_size=chunking["size"], chunk_overlap=chunking["overlap"])
            rechunk = manifest.get("chunking") not in (None, chunking)
            todo: list[tuple[CorpusFile, str, bool]] = []
            for f in files:
                row = known.get(f.source)
                if rechunk and row is not None and row["state"] == "done":
                    try:
                        todo.append((f, file_sha256(f.path), True))
                    except OSError as exc:
                        skip(f.source, f"cannot read ({exc.strerror or exc}); keeping the previously indexed version")
                    continue
                if row is not None and row["state"] == "done" and row["size"] == f.size and row["mtime_ns"] == f.mtime_ns:
                    report.unchanged += 1
                    continue
                keeping = "; keeping the previously indexed version" if row is not None else ""
                if _still_bad(f, known_skips):
                    skip(f.source, known_skips[f.source][2] + keeping)
                    continue
                if f.size > MAX_FILE_BYTES:  # before hashing: a huge file costs one stat, not a read
                    reason = f"too large ({f.size / 1e6:.0f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)"
                    manifest.set_skipped(f.source, f.size, f.mtime_ns, reason)
                    skip(f.source, reason + keeping)
                    continue
                try:
                    sha = file_sha256(f.path)
                except OSError as exc:
                    reason = f"cannot read ({exc.strerror or exc})"
                    manifest.set_skipped(f.source, f.size, f.mtime_ns, reason)
                    skip(f.source, reason + keeping)
                    continue
                if row is not None and row["state"] == "done" and row["sha256"] == sha:
                    manifest.touch(f.source, f.size, f.mtime_ns)
                    report.unchanged += 1
                    continue
                todo.append((f, sha, row is not None))

            _index_files(todo, settings, manifest, store, embedder, report, skip, on_progress)

            if report.changed:
                manifest.bump_generation()
            manifest.put("embedding", embedder.settings)
            if not rechunk or roots == [corpus]:  # a partial run leaves other files to re-chunk
                manifest.put("chunking", chunking)
            manifest.put("last_ingest", time.time())
            report.chunks_total = store.count()
        finally:
            manifest.close()
    report.seconds = time.perf_counter() - started
    return report


def _nothing_to_do(settings: Settings) -> bool:
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
    return _stored_chunk_count(settings) == expected and not corpus_changed(settings)


def _stored_chunk_count(settings: Settings) -> int | None:
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


def _in_scope(source: str, prefixes: list[str], whole_corpus: bool) -> bool:
    if whole_corpus:
        return True
    return any(source == p or source.startswith(p.rstrip("/") + "/") for p in prefixes)


def _index_files(todo, settings, manifest, store, embedder, report, skip, on_progress) -> None:
    """Load, chunk, embed and write as we go, in embedding groups that span files (short files
    still batch well): memory holds one group, whatever the corpus size, and a crash loses at
    most one group of work. The progress total is exact for what has been loaded and estimated
    (chunks per byte so far) for the rest."""
    from bot.chunk import chunk_document, make_splitter

    splitter = make_splitter(settings.chunk_size, settings.chunk_overlap)
    bytes_left = sum(f.size for f, _, _ in todo)
    seen_bytes = seen_chunks = done = 0
    group: list[tuple[CorpusFile, str, bool, list[Chunk]]] = []
    group_chunks = 0

    def total() -> int:
        per_byte = seen_chunks / seen_bytes if seen_bytes else 1 / max(1, settings.chunk_size - settings.chunk_overlap)
        return done + group_chunks + round(bytes_left * per_byte)

    if on_progress and todo:
        on_progress(0, total())
    for f, sha, existed in todo:
        bytes_left -= f.size
        try:
            doc = load_document(f.path, f.source)
        except LoadError as exc:
            manifest.set_skipped(f.source, f.size, f.mtime_ns, str(exc))
            skip(f.source, str(exc) + ("; keeping the previously indexed version" if existed else ""))
            continue
        chunks = chunk_document(doc, splitter)
        seen_bytes += f.size
        seen_chunks += len(chunks)
        group.append((f, sha, existed, chunks))
        group_chunks += len(chunks)
        if group_chunks >= EMBED_GROUP:
            done = _write_group(group, manifest, store, embedder, report, done, total(), on_progress)
            group, group_chunks = [], 0
    if group:
        _write_group(group, manifest, store, embedder, report, done, total(), on_progress)


def _write_group(group, manifest, store, embedder, report, done, total, on_progress) -> int:
    chunks = [c for _, _, _, cs in group for c in cs]
    vectors = embedder.embed([c.text for c in chunks])
    offset = 0
    for f, sha, existed, file_chunks in group:
        manifest.set_file(f.source, sha, f.size, f.mtime_ns, len(file_chunks), "pending",
                          file_chunks[0].title if file_chunks else "")
        # Overwrite in place, then drop what the old version had beyond: a query running
        # meanwhile sees old or new chunks of the file, never none.
        if file_chunks:
            store.upsert(file_chunks, vectors[offset:offset + len(file_chunks)])
        store.delete_source_except(f.source, {c.id for c in file_chunks})
        manifest.set_state(f.source, "done")
        manifest.clear_skipped(f.source)
        offset += len(file_chunks)
        report.chunks_embedded += len(file_chunks)
        if existed:
            report.updated += 1
        else:
            report.added += 1
    done += len(chunks)
    if on_progress:
        on_progress(done, total)
    return done


def _repair(manifest: Manifest, store: VectorStore, known: dict) -> int:
    """Undo what an interrupted run left: rows not `done`, and chunks the manifest can't explain."""
    repaired = 0
    for source, row in known.items():
        if row["state"] != "done":
            store.delete_source(source)
            manifest.remove(source)  # re-added as new by this run if the file still exists
            repaired += 1
    if store.count() != manifest.expected_chunks():
        expected = {s: r["n_chunks"] for s, r in manifest.files().items()}
        from bot.chunk import source_key

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


def _drop_index(settings: Settings) -> None:
    """Forget everything. The manifest is emptied first, in one transaction (deleting its files
    could leave a stale `-wal` beside a new database if killed halfway): if a crash comes before
    the collection is dropped, the next run finds chunks the manifest does not know and deletes
    them. The collection is dropped through the client, which caches open databases (deleting
    its files under it would break it)."""
    import shutil

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
    except IndexError_:
        raise
    except Exception:
        pass  # no collection yet
    shutil.rmtree(settings.index / "bm25", ignore_errors=True)


# --- read side helpers --------------------------------------------------------------------------

def index_exists(settings: Settings) -> bool:
    manifest = settings.index / open_manifest_name(settings)
    return manifest.exists() and (bool(settings.chroma_url) or (settings.index / "chroma").exists())


def corpus_changed(settings: Settings) -> bool:
    """Cheap check (stat only) whether an ingest would change anything."""
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
    files = discover([settings.corpus], settings.corpus, lambda s, r: None)

    if {f.source for f in files} != {s for s in known if not Path(s).is_absolute()}:
        # Sources that were skipped never enter the manifest's files: don't loop on them.
        unknown = {f.source for f in files} - set(known)
        gone = {s for s in known if not Path(s).is_absolute()} - {f.source for f in files}
        if gone or any(_loadable(f) and not _still_bad(f, skips) for f in files if f.source in unknown):
            return True
    for f in files:
        row = known.get(f.source)
        if row is not None and (row["state"] != "done" or row["size"] != f.size or row["mtime_ns"] != f.mtime_ns) \
                and not (row["state"] == "done" and _still_bad(f, skips)):
            return True
    return False


def _still_bad(f: CorpusFile, skips: dict[str, tuple[int, int, str]]) -> bool:
    """Skipped last time and unchanged since. A chmod fixes a read error without touching the
    mtime, so those are checked again (one access() call)."""
    entry = skips.get(f.source)
    if entry is None or entry[:2] != (f.size, f.mtime_ns):
        return False
    if "cannot read" in entry[2] or "permission" in entry[2].lower():
        return not os.access(f.path, os.R_OK)
    return True


def _loadable(f: CorpusFile) -> bool:
    return 0 < f.size <= MAX_FILE_BYTES


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
