"""Step 3b, store: the Chroma collection that holds chunks and their vectors, embedded under
`<index>/chroma` or on a Chroma server, and the translation of its failures into one-line errors.

We always pass our own vectors (`embedding_function=None`), so Chroma never downloads its default
model. A server that goes away or refuses a request is an `IndexProblem` naming what to do.

chromadb is imported only when a store is opened (~0.8 s of a cold start): a question answered
from the BM25 cache (bot/qa/retrieve.py) needs no Chroma at all, only the chunk count, which
`embedded_chunk_count` reads from Chroma's SQLite file. `LazyVectorStore` opens the store on
first use.
"""
from __future__ import annotations

import json
import re
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from bot.config import Settings
from bot.errors import IndexProblem, damaged, one_line
from bot.schema import Chunk

UPSERT_BATCH = 512  # chunks per Chroma write; also the unit of progress and crash loss


class VectorStore:
    """The Chroma collection: embedded under `<index>/chroma`, or a Chroma server."""

    def __init__(self, settings: Settings, create: bool = True, missing_ok: bool = False) -> None:
        """`create=False`: open an existing collection only; with `missing_ok`, a missing one
        leaves `collection` None instead of raising."""
        import chromadb  # here, not at the top: see the module docstring
        from chromadb import errors as chroma_errors
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        self.url = settings.chroma_url
        self.database_file = settings.index / "chroma" / CHROMA_DATABASE  # embedded: what can be damaged
        if settings.chroma_url:
            url = urlparse(settings.chroma_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise IndexProblem(f"not a Chroma server URL: {settings.chroma_url!r} (expected http://host:port)")
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
                raise IndexProblem(f"cannot reach the Chroma server at {settings.chroma_url} ({one_line(exc)})") from None
        else:
            try:
                self.client = chromadb.PersistentClient(path=str(settings.index / "chroma"), settings=chroma_settings)
            except Exception as exc:
                forget_embedded(settings.index / "chroma")  # Chroma keeps a half-made client: not that one again
                reason = damage_reason(exc)
                if reason:
                    raise damaged(self.database_file, reason) from None
                raise IndexProblem(f"cannot open the index at {settings.index / 'chroma'} ({one_line(exc)})") from None
        # We always pass our own vectors: embedding_function=None keeps Chroma from ever
        # downloading its default ONNX model.
        with self._server_call():
            if create:
                try:
                    self.collection = self.client.get_or_create_collection(
                        settings.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
                    )
                except IndexProblem:
                    raise
                except Exception as exc:
                    if _is_connection_error(exc):
                        raise
                    raise IndexProblem(f"cannot open the collection {settings.collection!r}: {one_line(exc)}") from None
            else:
                try:
                    self.collection = self.client.get_collection(settings.collection, embedding_function=None)
                except chroma_errors.NotFoundError:
                    if not missing_ok:
                        raise
                    self.collection = None

    @contextmanager
    def _server_call(self) -> Iterator[None]:
        """A server that goes away mid-run, or a damaged database file, is a one-line error, not a
        traceback. Whatever was half written is repaired by the next ingest (see the module
        docstring)."""
        try:
            yield
        except IndexProblem:
            raise
        except Exception as exc:
            reason = None if self.url else damage_reason(exc)
            if reason:
                raise damaged(self.database_file, reason) from None
            if self.url and _is_connection_error(exc):
                raise IndexProblem(f"lost the connection to the Chroma server at {self.url} "
                                  f"({one_line(exc)}); run the command again once it is back") from None
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
        return self.all_chunks_and_vectors(include_text)[0]

    def all_chunks_and_vectors(self, include_text: bool = True, vectors: bool = False) -> tuple[list[Chunk], np.ndarray | None]:
        """Every chunk, and with `vectors` their stored vectors in the same order (float32 rows)."""
        out: list[Chunk] = []
        rows: list[np.ndarray] = []
        total = self.count()
        include = ["metadatas", "documents"] if include_text else ["metadatas"]
        if vectors:
            include.append("embeddings")
        for offset in range(0, total, 5000):
            with self._server_call():
                got = self.collection.get(include=include, limit=5000, offset=offset)
            docs = got.get("documents") or [""] * len(got["ids"])
            out.extend(chunk_from_record(i, d or "", m) for i, d, m in zip(got["ids"], docs, got["metadatas"]))
            if vectors and len(got["ids"]):
                rows.append(np.asarray(got["embeddings"], dtype=np.float32))
        if not vectors:
            return out, None
        return out, (np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32))

    def chunks_of(self, sources: list[str]) -> list[Chunk]:
        """Every chunk of these sources, with its text (what a BM25 update fetches)."""
        out: list[Chunk] = []
        for i in range(0, len(sources), 100):
            where = {"source": {"$in": sources[i:i + 100]}}
            offset = 0
            while True:
                with self._server_call():
                    got = self.collection.get(where=where, include=["metadatas", "documents"],
                                              limit=5000, offset=offset)
                out.extend(chunk_from_record(chunk_id, d or "", m)
                           for chunk_id, d, m in zip(got["ids"], got["documents"], got["metadatas"]))
                if len(got["ids"]) < 5000:
                    break
                offset += 5000
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


class LazyVectorStore:
    """The embedded `VectorStore` of `settings`, opened (and chromadb imported) on first use of
    anything but `url` and `stored_count`; opening raises what `VectorStore` raises."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.chroma_url
        self._store: VectorStore | None = None

    def open(self) -> VectorStore:
        if self._store is None:
            self._store = VectorStore(self.settings)
        return self._store

    def stored_count(self) -> int | None:
        """The chunk count from Chroma's SQLite file without opening Chroma; None when unknown or
        when the store is open already (then ask the store)."""
        if self._store is not None or self.url:
            return None
        return embedded_chunk_count(self.settings.index / "chroma" / CHROMA_DATABASE, self.settings.collection)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("settings", "_store"):
            raise AttributeError(name)
        return getattr(self.open(), name)


def embedded_chunk_count(database: Path, collection: str) -> int | None:
    """The collection's chunk count read straight from Chroma's SQLite file `database`, without
    starting Chroma. This leans on Chroma's private schema, so any surprise (a missing or damaged
    file, another schema) means "unknown" (None) and the caller takes the slow, sure path."""
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute(
                "SELECT COUNT(e.id) FROM collections c JOIN segments s ON s.collection = c.id "
                "JOIN embeddings e ON e.segment_id = s.id WHERE c.name = ? AND s.scope = 'METADATA'",
                (collection,),
            ).fetchone()
        finally:
            db.close()
        return int(row[0]) if row else None
    except (sqlite3.Error, OSError, ValueError, TypeError):
        return None


CHROMA_DATABASE = "chroma.sqlite3"
_SQLITE_CODE = re.compile(r"\(code: (\d+)\)\s*")


def damage_reason(exc: BaseException) -> str | None:
    """Why Chroma's embedded database is unusable, when it is damaged (SQLite's CORRUPT or NOTADB,
    as the Rust bindings report them: "error returned from database: (code: 26) file is not a
    database"); None for any other failure."""
    text = " ".join(str(exc).split())
    match = _SQLITE_CODE.search(text)
    if match and int(match.group(1)) & 0xFF in (11, 26):
        return text[match.end():][:200] or "damaged"
    if "database disk image is malformed" in text or "file is not a database" in text:
        return text[:200]
    return None


def forget_embedded(path) -> None:
    """Stop and forget the embedded Chroma that this process holds open on `path` (a folder
    about to be deleted): the next client made for it opens the files afresh."""
    if "chromadb.api.shared_system_client" not in sys.modules:
        return  # no Chroma client was ever made in this process: nothing is held open
    from chromadb.api.shared_system_client import SharedSystemClient

    for identifier, system in list(SharedSystemClient._identifier_to_system.items()):
        if identifier == str(path):
            SharedSystemClient._identifier_to_system.pop(identifier, None)
            SharedSystemClient._identifier_to_refcount.pop(identifier, None)
            try:
                system.stop()
            except Exception:
                pass


def _is_connection_error(exc: BaseException) -> bool:
    import httpx  # chromadb's HTTP client, loaded with it

    return isinstance(exc, (httpx.TransportError, ConnectionError))


def _is_auth_error(exc: BaseException) -> bool:
    from chromadb import errors as chroma_errors

    if isinstance(exc, (chroma_errors.AuthorizationError, chroma_errors.ChromaAuthError)):
        return True
    # A proxy's refusal reaches us as a generic error carrying its status or reason.
    return re.search(r"\b(401|403|unauthorized|forbidden)\b", str(exc), re.IGNORECASE) is not None


def _refused(url: str, exc: BaseException) -> IndexProblem:
    return IndexProblem(f"the Chroma server at {url} refused the request ({one_line(exc)}); "
                       "set QABOT_CHROMA_TOKEN to its token")


def chunk_metadata(chunk: Chunk) -> dict:
    meta = {"source": chunk.source, "title": chunk.title, "start": chunk.start, "end": chunk.end}
    if chunk.section:
        meta["section"] = chunk.section
    if chunk.page is not None:
        meta["page"] = chunk.page
    for key in ("headings", "pages"):  # Chroma metadata holds scalars: JSON text
        if getattr(chunk, key):
            meta[key] = json.dumps(getattr(chunk, key), ensure_ascii=False)
    return meta


def chunk_from_record(chunk_id: str, text: str, meta: dict) -> Chunk:
    return Chunk(
        id=chunk_id, text=text, source=meta.get("source", ""), title=meta.get("title", ""),
        section=meta.get("section"), page=meta.get("page"),
        start=int(meta.get("start", 0)), end=int(meta.get("end", 0)),
        headings=_marks(meta.get("headings")), pages=_marks(meta.get("pages")),
    )


def _marks(raw: str | None) -> tuple:
    """Headings or pages stored as JSON text; () for chunks indexed before they were stored."""
    try:
        return tuple(tuple(pair) for pair in json.loads(raw)) if raw else ()
    except (ValueError, TypeError):
        return ()
