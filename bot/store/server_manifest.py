"""Step 3b, store: the manifest of an index on a Chroma server, kept on that server, and the
lease that lets several machines ingest into one collection without stepping on each other.

The local manifest (bot/ingest/manifest.py, SQLite in `--index`) ties a collection to the one
machine that holds it. On a server, the manifest lives in a companion collection
`<collection>.manifest` beside the chunks, so every client of the server sees the same one:

    file:<source>  per indexed file: sha256, size, mtime_ns, n_chunks, state (pending/done/deleting)
    skip:<source>  per file that could not be indexed: size, mtime_ns, reason
    meta:<key>     index-wide settings (JSON): embedding, chunking, corpus, generation, ...
    lease:<uuid>   one ingester's claim on a scope (a folder of the corpus, "" = all of it)

Records carry a 1-dimensional dummy vector (Chroma requires one; nobody queries it).

The lease. Chroma has no compare-and-swap, but each request is applied in order, so a
claim-then-look protocol is enough: write my claim, then read every claim; if another live claim
overlaps my scope, withdraw mine, wait a random while, and try again. Two claimers cannot both
win (each would have to read before the other wrote, and each wrote before reading). A claim is
live until its `expires` (renewed every third of the lease by a thread in the holder); a claim of
a dead process on this same host is not live at all, so a SIGKILLed ingest's folder is free at
once here and after the lease elsewhere. Disjoint folders (two machines each ingesting their
part of the corpus) run at the same time; the same folder, or a folder and the whole corpus,
take turns. Clocks of the machines are assumed to agree to well within the lease (NTP).
"""
from __future__ import annotations

import functools
import json
import os
import random
import socket
import threading
import time
import uuid
from typing import Callable

from bot.errors import IndexProblem
from bot.ingest.discover import SkipRecord

MANIFEST_SUFFIX = ".manifest"
LEASE_SECONDS = 60.0  # renewed every 20 s; a crashed ingester's folder is free after at most this
PAGE = 5000  # records per Chroma get (its own paging limit for large collections)
_DUMMY = [1.0]


def manifest_collection_name(collection: str) -> str:
    return collection + MANIFEST_SUFFIX


def scopes_overlap(a: str, b: str) -> bool:
    """Whether two scopes (source prefixes; "" is the whole corpus) share any file."""
    if a == "" or b == "":
        return True
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def _alive_here(meta: dict) -> bool:
    """A claim made by a process on this host is live only while that process exists."""
    if meta.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(meta.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


class ServerLease:
    """A claim on some scopes of the corpus, held until `release()` (see the module docstring)."""

    def __init__(self, manifest: "ServerManifest", scopes: list[str], seconds: float = LEASE_SECONDS) -> None:
        self.manifest = manifest
        self.scopes = scopes or [""]
        self.seconds = seconds
        self.id = "lease:" + uuid.uuid4().hex
        self.lost = False  # set when the claim was found gone or expired at a renewal
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _meta(self) -> dict:
        return {"kind": "lease", "scopes": json.dumps(self.scopes), "host": socket.gethostname(),
                "pid": os.getpid(), "expires": time.time() + self.seconds}

    def _rivals(self) -> list[str]:
        """Ids of live claims, other than mine, that overlap my scopes; dead ones are deleted."""
        rivals, dead = [], []
        now = time.time()
        for record_id, meta in self.manifest._records({"kind": "lease"}):
            if record_id == self.id:
                continue
            if float(meta.get("expires", 0)) < now or not _alive_here(meta):
                dead.append(record_id)
                continue
            theirs = json.loads(meta.get("scopes", '[""]'))
            if any(scopes_overlap(a, b) for a in self.scopes for b in theirs):
                rivals.append(record_id)
        if dead:
            self.manifest._delete(dead)
        return rivals

    def acquire(self, on_wait: Callable[[], None] | None = None, timeout: float | None = None) -> None:
        waited = False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.manifest._upsert([self.id], [self._meta()])
            if not self._rivals():
                break
            self.manifest._delete([self.id])
            if not waited and on_wait:
                on_wait()
            waited = True
            if deadline is not None and time.monotonic() > deadline:
                raise IndexProblem("another ingest holds these folders of the collection; try again later")
            time.sleep(random.uniform(0.2, 1.0))  # random: two claimers that both withdrew do not meet again
        self._renewer = threading.Thread(target=self._renew, name="qabot-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                got = self.manifest.collection.get(ids=[self.id], include=["metadatas"])
                if not got["ids"] or float(got["metadatas"][0].get("expires", 0)) < time.time():
                    self.lost = True
                    return
                self.manifest.collection.update(ids=[self.id], metadatas=[{"expires": time.time() + self.seconds}])
            except Exception:
                pass  # the server is away: the next manifest write says so in one line

    def check(self) -> None:
        """Refuse to write once the claim has been lost (this process stalled past its lease)."""
        if self.lost:
            raise IndexProblem("this ingest lost its lease on the collection (stalled longer than "
                               f"{self.seconds:.0f} s); run it again")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(5)
        try:
            self.manifest._delete([self.id])
        except Exception:
            pass  # unreachable server: the claim expires on its own


def _server_call(method):
    """A server failure in a manifest call is the store's one-line error (see VectorStore)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.store._server_call():
            return method(self, *args, **kwargs)

    return wrapper


class ServerManifest:
    """The same interface as bot.ingest.manifest.Manifest, kept in `<collection>.manifest` on the
    Chroma server. `shared`: other ingesters may write it at the same time (each within the
    scopes of its lease), so a run repairs only what lies in its own scopes."""

    shared = True

    def __init__(self, store, collection: str) -> None:
        self.store = store  # a VectorStore on the server: its client and its error translation
        self.name = manifest_collection_name(collection)
        self.path = self.name  # what errors name
        with store._server_call():
            self.collection = store.client.get_or_create_collection(
                self.name, metadata={"qabot": "manifest"}, embedding_function=None)
        self.lease: ServerLease | None = None

    @staticmethod
    def exists(store, collection: str) -> bool:
        """Whether `store`'s server holds a manifest with any file or setting, creating nothing."""
        from chromadb import errors as chroma_errors  # not at the top: see bot/store/chroma.py

        with store._server_call():
            try:
                records = store.client.get_collection(manifest_collection_name(collection), embedding_function=None)
            except chroma_errors.NotFoundError:
                return False
            return bool(records.get(where={"kind": {"$in": ["file", "meta"]}}, include=[], limit=1)["ids"])

    @_server_call
    def lock(self, scopes: list[str], on_wait: Callable[[], None] | None = None,
             seconds: float = LEASE_SECONDS) -> ServerLease:
        """Hold a lease on `scopes` until `close()`; waits (saying so once) while another holds them."""
        lease = ServerLease(self, scopes, seconds)
        lease.acquire(on_wait)
        self.lease = lease
        return lease

    # -- raw records

    def _records(self, where: dict) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        offset = 0
        while True:
            got = self.collection.get(where=where, include=["metadatas"], limit=PAGE, offset=offset)
            out.extend(zip(got["ids"], got["metadatas"]))
            if len(got["ids"]) < PAGE:
                return out
            offset += PAGE

    def _upsert(self, ids: list[str], metas: list[dict]) -> None:
        self.collection.upsert(ids=ids, embeddings=[_DUMMY] * len(ids), metadatas=metas)

    def _delete(self, ids: list[str]) -> None:
        for i in range(0, len(ids), PAGE):
            self.collection.delete(ids=ids[i:i + PAGE])

    def _writing(self) -> None:
        if self.lease is not None:
            self.lease.check()

    # -- the Manifest interface

    @_server_call
    def files(self) -> dict[str, dict]:
        return {m["source"]: m for _, m in self._records({"kind": "file"})}

    @_server_call
    def set_file(self, source: str, sha256: str, size: int, mtime_ns: int, n_chunks: int,
                 state: str, title: str = "") -> None:
        self._writing()
        self._upsert(["file:" + source], [{"kind": "file", "source": source, "sha256": sha256, "size": size,
                                          "mtime_ns": mtime_ns, "n_chunks": n_chunks, "state": state,
                                          "title": title}])

    @_server_call
    def set_state(self, source: str, state: str) -> None:
        self._writing()
        self.collection.update(ids=["file:" + source], metadatas=[{"state": state}])

    @_server_call
    def touch(self, source: str, size: int, mtime_ns: int) -> None:
        self._writing()
        self.collection.update(ids=["file:" + source], metadatas=[{"size": size, "mtime_ns": mtime_ns}])

    @_server_call
    def remove(self, source: str) -> None:
        self._writing()
        self._delete(["file:" + source])

    @_server_call
    def skipped(self):
        return {m["source"]: SkipRecord(m["size"], m["mtime_ns"], m["reason"]) for _, m in self._records({"kind": "skip"})}

    @_server_call
    def set_skipped(self, source: str, size: int, mtime_ns: int, reason: str) -> None:
        self._writing()
        self._upsert(["skip:" + source], [{"kind": "skip", "source": source, "size": size, "mtime_ns": mtime_ns,
                                          "reason": reason}])

    @_server_call
    def clear_skipped(self, source: str) -> None:
        self._writing()
        self._delete(["skip:" + source])

    def expected_chunks(self) -> int:
        return sum(int(r["n_chunks"]) for r in self.files().values() if r["state"] == "done")

    def documents(self) -> int:
        return sum(1 for r in self.files().values() if r["state"] == "done")

    @_server_call
    def get(self, key: str, default=None):
        got = self.collection.get(ids=["meta:" + key], include=["metadatas"])
        if not got["ids"]:
            return default
        try:
            return json.loads(got["metadatas"][0]["value"])
        except (ValueError, KeyError, TypeError):
            raise IndexProblem(f"the manifest collection {self.name!r} has an unreadable {key} setting; "
                               "run `qabot ingest --rebuild`") from None

    @_server_call
    def put(self, key: str, value) -> None:
        self._upsert(["meta:" + key], [{"kind": "meta", "key": key, "value": json.dumps(value)}])

    @_server_call
    def bump_generation(self) -> None:
        """A new random token, not a counter: two ingesters bumping at once cannot both write the
        same next value, so a reader that cached by the old one always sees a change."""
        self.put("generation", uuid.uuid4().hex)

    @_server_call
    def empty(self) -> None:
        """Forget every file, skip record and setting (the generation and live leases stay)."""
        ids = [i for i, _ in self._records({"kind": {"$in": ["file", "skip"]}})]
        ids += [i for i, m in self._records({"kind": "meta"}) if m.get("key") != "generation"]
        self._delete(ids)

    def check(self) -> None:
        """Nothing to read through: the server keeps its own files."""

    def close(self) -> None:
        if self.lease is not None:  # release() never raises: an unreachable server's claim expires
            self.lease.release()
            self.lease = None
