"""Step 4, retrieve: a query → the best passages, by dense (Chroma) + BM25 fused with RRF.

Dense search finds paraphrases; BM25 finds rare exact terms (names, identifiers, numbers) that
a small embedding model blurs. Reciprocal rank fusion combines ranks, not scores, so the two
scales never need calibrating against each other.

The BM25 side is rebuilt from the collection itself and cached on disk keyed by the index's
generation counter, which every ingest that changes anything bumps: it cannot go stale.

On a Chroma server the BM25 side is an IncrementalBM25 (bm25_incremental.py), cached in the
bot's own --index folder with each file's hash as the server's manifest had it: when the
generation has moved on, only the chunks of files whose hash changed are fetched from the
server and tokenized, instead of every text of the collection (benchmarks/scale.py measures it).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import bm25s
import numpy as np

from bot.qa.bm25_incremental import IncrementalBM25, cached_chunk, top_scored, write_cache
from bot.qa.definitions import Definitions
from bot.qa.entities import _IDENTIFIER, ProperNouns
from bot.schema import Chunk, Hit
from bot.store.server_manifest import ServerManifest
from bot.text import tokenize, tokenize_document

RRF_K = 60  # the constant from Cormack et al.; damps the head of each ranking
# Weight of the defining-chunks list: 0.5, 1 and 2 gave the same Python-docs dev recall@5 (.70 -> .73).
DEFINITION_WEIGHT = 1.0

# Up to this many chunks, dense search is exact, over the stored vectors cached with BM25's
# (float32, 150 MB at the limit): on 13k Python-docs chunks the dense step takes 1.4-1.6 ms p50
# against 4.4 ms for Chroma's HNSW (ef_search 100), whose top 30 held 98.9% of the true 30 nearest (87% at
# worst) and changed between processes opening the same index, so the same question could get
# another answer. Above it, and on a Chroma server, Chroma's index is searched.
EXACT_SEARCH_MAX_CHUNKS = 100_000
DEFINITIONS_FILE = "definitions.json"  # in the BM25 cache folder, keyed by its generation


class BM25Index:
    """bm25s over every chunk in the collection, plus the chunks themselves for lookup, and
    (embedded index) their vectors for exact dense search, and where names are defined."""

    def __init__(self, chunks: list[Chunk], vectors: np.ndarray | None = None) -> None:
        self.chunks = chunks
        self.directory: Path | None = None  # the cache folder it was saved to or loaded from
        self.generation = None
        self._definitions: Definitions | None = None
        self.vectors = _unit_rows(vectors) if vectors is not None and len(vectors) == len(chunks) else None
        self.model = bm25s.BM25()
        tokens = [tokenize_document(c.text + "\n" + (c.section or "") + "\n" + c.title) for c in chunks]
        self.doc_freq: dict[str, int] = {}
        for doc in tokens:
            for t in set(doc):
                self.doc_freq[t] = self.doc_freq.get(t, 0) + 1
        if chunks:
            self.model.index(tokens, show_progress=False)
        self.nouns = ProperNouns.from_texts(f"{c.title}\n{c.section or ''}\n{c.text}" for c in chunks)

    def has_term(self, term: str) -> bool:
        return term in self.doc_freq

    def idf(self, term: str) -> float:
        """Inverse document frequency; a term the corpus never uses counts as rarest of all."""
        n = max(len(self.chunks), 1)
        return float(np.log((n + 1) / (self.doc_freq.get(term, 0) + 0.5)))

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        """The k chunks whose stored vectors are closest to `vector` by cosine, exactly."""
        # einsum, not BLAS: OpenBLAS's threads spin after a call and slowed the answerer's ONNX
        # Runtime embedding that follows (answer step 33 -> 39-49 ms p50 on the Python docs, 2 cores);
        # einsum runs on this thread in 0.9 ms for 13k vectors.
        k = min(k, len(self.vectors))
        if k <= 0:
            return []  # an empty index (its vectors have no columns to multiply)
        scores = np.einsum("ij,j->i", self.vectors, np.asarray(vector, dtype=np.float32))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # ties in chunk order: the same answer every run
        return [(self.chunks[i], float(scores[i])) for i in top]

    def search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        terms = [t for t in tokenize(query) if t in self.doc_freq]
        if not terms or not self.chunks:
            return []
        return top_scored(self.chunks, self.model.get_scores(terms), k)

    def definitions(self) -> Definitions:
        """Where each name is defined (definitions.py): read from the cache folder when it holds
        them for this generation and these chunks (10 ms for the 13k Python-docs chunks), else
        built (0.19 s) and added to the folder for the next process."""
        if self._definitions is None:
            self._definitions = self._cached_definitions()
            if self._definitions is None:
                self._definitions = Definitions(self.chunks)
                if self.directory is not None:
                    self._save_definitions(self.directory)
        return self._definitions

    def _cached_definitions(self) -> Definitions | None:
        if self.directory is None:
            return None
        try:
            saved = json.loads((self.directory / DEFINITIONS_FILE).read_text())
            # Another process may have replaced the folder since this one read it: only the
            # definitions made at this generation from as many chunks, every id among them, count.
            if saved["generation"] != self.generation or saved["chunks"] != len(self.chunks):
                return None
            return Definitions.from_json(saved["by_name"], self.chunks)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_definitions(self, directory: Path) -> None:
        """Written whole under a name of this process's, then renamed into place: a reader sees
        the file complete or not at all. A folder that cannot be written is left as it is."""
        tmp = directory / f"{DEFINITIONS_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({"generation": self.generation, "chunks": len(self.chunks),
                                       "by_name": self.definitions().to_json()}))
            os.replace(tmp, directory / DEFINITIONS_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    # On-disk cache: chunks as JSON lines + bm25s's own arrays (+ the definitions, once built).
    def save(self, directory: Path, generation) -> None:
        def fill(tmp: Path) -> None:
            if self.chunks:
                self.model.save(str(tmp / "bm25"), show_progress=False)
            (tmp / "doc_freq.json").write_text(json.dumps(self.doc_freq))
            (tmp / "nouns.json").write_text(json.dumps(self.nouns.to_json()))
            if self.vectors is not None:
                np.save(tmp / "vectors.npy", self.vectors)
            self._save_definitions(tmp)
        self.generation = generation
        write_cache(directory, self.chunks, generation, fill)
        self.directory = directory

    @classmethod
    def load(cls, directory: Path, generation, vectors: bool = False) -> "BM25Index | None":
        """The cache as saved at `generation`, else None; with `vectors`, only one that holds them."""
        try:
            if json.loads((directory / "generation.json").read_text()) != generation:
                return None
            if vectors and not (directory / "vectors.npy").exists():
                return None  # a cache written before vectors were kept
            self = cls.__new__(cls)
            self.directory, self.generation, self._definitions = directory, generation, None
            self.vectors = np.load(directory / "vectors.npy") if vectors else None
            with open(directory / "chunks.jsonl", encoding="utf-8") as f:
                self.chunks = [cached_chunk(json.loads(line)) for line in f]
            self.doc_freq = json.loads((directory / "doc_freq.json").read_text())
            self.nouns = ProperNouns.from_json(json.loads((directory / "nouns.json").read_text()))
            self.model = bm25s.BM25.load(str(directory / "bm25"), show_progress=False) if self.chunks else bm25s.BM25()
            if self.vectors is not None and len(self.vectors) != len(self.chunks):
                return None
            return self
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def rrf_fuse(rankings: list[list[str]], weights: list[float], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: score(d) = Σ w_i / (k + rank_i(d))."""
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return fused


class HybridRetriever:
    """Dense + BM25 + RRF over one index. Thread-safe for concurrent queries."""

    def __init__(self, store, embedder, bm25_dir: Path | None, generation,
                 candidates: int = 30, dense_weight: float = 1.0, bm25_weight: float = 1.0) -> None:
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.bm25_weight = bm25_weight
        self.bm25 = self._load_bm25(bm25_dir, generation)
        self._definitions: Definitions | None = None  # built on the first question naming an identifier

    def definitions(self) -> Definitions:
        # Made on the first question naming an identifier, from the chunks BM25 holds: the
        # embedded index's cache keeps them (BM25Index.definitions); a server's BM25 builds them
        # (0.19 s for the 13k Python-docs chunks).
        if self._definitions is None:
            cached = getattr(self.bm25, "definitions", None)
            self._definitions = cached() if cached is not None else Definitions(self.bm25.chunks)
        return self._definitions

    def _load_bm25(self, bm25_dir, generation) -> BM25Index | IncrementalBM25:
        """The cache at `generation` holding as many chunks as the collection, else rebuilt from
        the collection (and saved). With a store that can read its count without opening Chroma
        (a LazyVectorStore: from Chroma's SQLite file), a valid cache searched exactly answers
        without Chroma ever being opened or chromadb imported; a count it cannot read is asked
        of the store itself, and a stale cache is rebuilt from it, as before."""
        if getattr(self.store, "url", None):  # a Chroma server
            return self._server_bm25(bm25_dir, generation)
        stored_count = getattr(self.store, "stored_count", None)
        count = stored_count() if stored_count is not None else None
        if count is None:
            count = self.store.count()
        exact = count <= EXACT_SEARCH_MAX_CHUNKS
        if bm25_dir is not None:
            cached = BM25Index.load(bm25_dir, generation, vectors=exact)
            if cached is not None and len(cached.chunks) == count:
                if not exact and hasattr(self.store, "open"):
                    self.store.open()  # Chroma answers the dense queries: opened now, its errors said now
                return cached
        index = BM25Index(*self.store.all_chunks_and_vectors(vectors=exact))
        if bm25_dir is not None:
            try:
                index.save(bm25_dir, generation)
            except OSError:
                pass  # a read-only index still answers; it just rebuilds next time
        return index

    def _server_bm25(self, bm25_dir, generation) -> IncrementalBM25:
        """BM25 over a server's collection: the cache as it is at the same generation, else the
        cache updated with the files whose hash changed (only their chunks are fetched and
        tokenized), else built from every chunk. The manifest is read before the chunks: a file
        changed in between is fetched again next time, never kept stale."""
        cached = IncrementalBM25.load(bm25_dir) if bm25_dir is not None else None
        if cached is not None and cached.generation == generation and len(cached.chunks) == self.store.count():
            return cached
        rows = ServerManifest(self.store, self.store.collection.name).files()
        files = {s: r["sha256"] for s, r in rows.items() if r["state"] == "done"}
        if cached is None:
            index = IncrementalBM25(self.store.all_chunks(), files)
        else:
            # A file being re-ingested (not `done`) keeps its cached chunks until it is done.
            stale = {s for s, sha in files.items() if cached.sources.get(s) != sha}
            gone = {s for s in cached.sources if s not in rows}
            sources = {s: sha for s, sha in cached.sources.items() if s not in stale | gone}
            sources.update((s, files[s]) for s in stale)
            cached.update(stale | gone, self.store.chunks_of(sorted(stale)), sources)
            index = cached
        if bm25_dir is not None:
            try:
                index.save(bm25_dir, generation)
            except OSError:
                pass  # a read-only folder still answers; it just updates again next time
        return index

    def retrieve(self, query: str, k: int, timings: dict | None = None) -> tuple[list[Hit], np.ndarray]:
        """The top-k fused hits and the query vector (the answerer reuses it)."""
        timings = timings if timings is not None else {}
        t0 = time.perf_counter()
        vector = self.embedder.embed([query])[0]
        t1 = time.perf_counter()
        if getattr(self.bm25, "vectors", None) is not None:
            dense = self.bm25.nearest(vector, self.candidates)
        else:
            dense = self.store.query(vector.tolist(), self.candidates)
        t2 = time.perf_counter()
        lexical = self.bm25.search(query, self.candidates)
        t3 = time.perf_counter()
        by_id: dict[str, Hit] = {}
        for chunk, sim in dense:
            by_id[chunk.id] = Hit(chunk, 0.0, dense=sim)
        for chunk, score in lexical:
            by_id.setdefault(chunk.id, Hit(chunk, 0.0)).bm25 = score
        rankings = [[c.id for c, _ in dense], [c.id for c, _ in lexical]]
        fused = rrf_fuse(rankings, [self.dense_weight, self.bm25_weight])
        if _IDENTIFIER.search(query):
            # A third list: the chunks that define the identifiers the question names (definitions.py).
            defining = self.definitions().ranking(query, fused)
            if defining:
                for chunk in defining:
                    by_id.setdefault(chunk.id, Hit(chunk, 0.0))
                fused = rrf_fuse(rankings + [[c.id for c in defining]],
                                 [self.dense_weight, self.bm25_weight, DEFINITION_WEIGHT])
        hits = sorted(by_id.values(), key=lambda h: -fused[h.chunk.id])[:k]
        for rank, hit in enumerate(hits, start=1):
            hit.score, hit.rank = fused[hit.chunk.id], rank
        t4 = time.perf_counter()
        timings.update(embed=(t1 - t0) * 1e3, dense=(t2 - t1) * 1e3, bm25=(t3 - t2) * 1e3, fusion=(t4 - t3) * 1e3)
        return hits, vector
