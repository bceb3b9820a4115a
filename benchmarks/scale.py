"""Scale on a Chroma server: the bot's start-up to its first answer, warm latency and memory at
20k, 50k (and 200k) chunks, and what the server costs per chunk. Not a test.

    python -m benchmarks.scale [--sizes 20000,50000,200000] [--queries 40]

A `chroma run` is started on loopback (a free port, its own temporary folder, stopped at the
end). Per size, a synthetic corpus is written straight into a collection: Zipf-distributed
pseudo-words in sentences (~1,000 characters a chunk, 25 chunks a file), with cheap hashed
bag-of-words vectors instead of the model (the model is not what scales here: it embeds one
question per answer), plus the server manifest rows an ingest would have written. Then the bot
runs in a fresh process each time (`--child`), three ways:

    no cache    BM25 built from every chunk fetched over HTTP (what server mode did before #20)
    cache       the BM25 cache of this bot machine, at the server's generation
    1 changed   one file re-ingested since the cache was made: only its chunks are fetched

and reports process start to first answer, warm p50/p95 of `QA.answer`, and the bot's RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from benchmarks.common import machine, pct, table

STARTED = time.perf_counter()  # the child's start, as near process start as Python allows
CHUNKS_PER_FILE = 25
WORDS_PER_CHUNK = 150
VOCAB = 30_000
HASH_ROWS = 1 << 16


class HashedEmbedder:
    """Hashed bag-of-words vectors: each word a fixed random unit vector, a text their
    normalised sum. Cheap, deterministic, and similar texts get similar vectors."""

    def __init__(self, precision: str) -> None:
        from bot.embed import DIM, MODEL_NAME

        self.precision = precision
        self.settings = {"model": MODEL_NAME, "precision": precision, "dim": DIM, "normalized": True}
        rng = np.random.default_rng(0)
        self.table = rng.standard_normal((HASH_ROWS, DIM), dtype=np.float32)

    def rows(self, text: str) -> list[int]:
        return [zlib.crc32(w.lower().strip(".,?").encode()) % HASH_ROWS for w in text.split()] or [0]

    def embed(self, texts: list[str], **_) -> np.ndarray:
        out = np.stack([self.table[self.rows(t)].sum(axis=0) for t in texts]) if texts else \
            np.zeros((0, self.table.shape[1]), np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)

    embed_for_ranking = embed

    def warm_up(self) -> None:
        pass


def vocabulary() -> list[str]:
    rng = np.random.default_rng(1)
    syllables = ["ka", "lo", "mi", "ser", "tan", "vu", "dre", "pol", "nix", "ga", "ther", "quo", "bel", "zan",
                 "or", "ith", "mun", "cra", "fe", "sol"]
    words = set()
    while len(words) < VOCAB:
        words.add("".join(rng.choice(syllables, size=rng.integers(2, 5))))
    return sorted(words)


def synthetic_chunks(n: int, seed: int = 7):
    """n chunks of Zipf-distributed words in sentences, CHUNKS_PER_FILE to a file."""
    from bot.ingest.chunk import source_key
    from bot.schema import Chunk

    words = np.array(vocabulary())
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, VOCAB + 1) ** 1.05
    weights /= weights.sum()
    picks = rng.choice(VOCAB, size=(n, WORDS_PER_CHUNK), p=weights)
    chunks = []
    for i in range(n):
        source = f"docs/file{i // CHUNKS_PER_FILE:06d}.md"
        sentence_words = words[picks[i]].tolist()
        sentences = [" ".join(sentence_words[j:j + 12]).capitalize() + "." for j in range(0, WORDS_PER_CHUNK, 12)]
        text = " ".join(sentences)
        chunks.append(Chunk(id=f"{source_key(source)}-{i % CHUNKS_PER_FILE:05d}", text=text, source=source,
                            title=f"File {i // CHUNKS_PER_FILE}", section="Part", start=0, end=len(text)))
    return chunks


def questions(chunks, count: int) -> list[str]:
    """Questions made of a rare and a common word of random chunks (so BM25 and dense both work)."""
    rng = np.random.default_rng(3)
    out = []
    for i in rng.choice(len(chunks), size=count, replace=False):
        ws = sorted(set(chunks[i].text.lower().replace(".", "").split()), key=len)
        out.append(f"what is {ws[-1]} {ws[len(ws) // 2]}?")
    return out


# --- the server ------------------------------------------------------------------------------


class Server:
    def __init__(self, root: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root = root
        chroma = Path(sys.executable).parent / "chroma"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(chroma), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=open(root / "chroma.log", "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("chroma run did not start")

    def rss_mb(self) -> float:
        """Resident memory of the server process (KiB in /proc → MB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def disk_mb(self) -> float:
        return sum(p.stat().st_size for p in (self.root / "data").rglob("*") if p.is_file()) / 1e6

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def load(url: str, collection: str, chunks, embedder: HashedEmbedder) -> dict:
    """Write chunks, vectors and manifest rows as an ingest would; chunks/s of the writes."""
    from bot.config import Settings
    from bot.store.chroma import VectorStore
    from bot.store.server_manifest import ServerManifest

    settings = Settings(chroma_url=url, collection=collection)
    store = VectorStore(settings)
    started = time.perf_counter()
    for i in range(0, len(chunks), 2048):
        part = chunks[i:i + 2048]
        store.upsert(part, embedder.embed([c.text for c in part]).tolist())
    seconds = time.perf_counter() - started
    manifest = ServerManifest(store, collection)
    files = sorted({c.source for c in chunks})
    for i in range(0, len(files), 1000):  # one request per 1,000 rows (an ingest writes one per file)
        part = files[i:i + 1000]
        manifest._upsert([f"file:{s}" for s in part],
                         [{"kind": "file", "source": s, "sha256": "v1", "size": 1, "mtime_ns": 1,
                           "n_chunks": CHUNKS_PER_FILE, "state": "done", "title": ""} for s in part])
    manifest.put("embedding", embedder.settings)
    manifest.put("chunking", {"size": 1000, "overlap": 150})
    manifest.bump_generation()
    return {"write_s": seconds, "chunks_per_s": len(chunks) / seconds}


def change_one_file(url: str, collection: str, chunks, embedder: HashedEmbedder) -> None:
    """Re-ingest one file with new text, as `qabot ingest` would (pending → write → done, new generation)."""
    from bot.config import Settings
    from bot.store.chroma import VectorStore
    from bot.store.server_manifest import ServerManifest

    settings = Settings(chroma_url=url, collection=collection)
    store = VectorStore(settings)
    manifest = ServerManifest(store, collection)
    source = chunks[0].source
    changed = [c.__class__(**{**c.__dict__, "text": c.text + " Changed later."}) for c in chunks if c.source == source]
    manifest.set_file(source, "v2", 1, 2, len(changed), "pending")
    store.upsert(changed, embedder.embed([c.text for c in changed]).tolist())
    manifest.set_state(source, "done")
    manifest.bump_generation()


# --- the bot, in its own process ---------------------------------------------------------------


def child(url: str, collection: str, index: str, mode: str, asked: list[str]) -> dict:
    from bot.config import Settings
    from bot.embed import resolve_precision
    from bot.qa import pipeline

    if mode == "no cache":  # the path server mode always took before: no cache, every text fetched
        pipeline.bm25_cache_dir = lambda settings: None
    settings = Settings(chroma_url=url, collection=collection, index=Path(index), corpus=Path(index))
    qa = pipeline.QA(settings, embedder=HashedEmbedder(resolve_precision("auto")))
    qa.answer(asked[0])
    first = time.perf_counter() - STARTED
    warm = []
    for q in asked[1:]:
        t = time.perf_counter()
        qa.answer(q)
        warm.append((time.perf_counter() - t) * 1e3)
    import resource

    rss = next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return {"first_s": first, "p50_ms": pct(warm, 50), "p95_ms": pct(warm, 95), "rss_mb": rss,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "bm25_chunks": len(qa.retriever.bm25.chunks)}


def run_child(url: str, collection: str, index: Path, mode: str, asked: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", url, collection, str(index), mode,
                           json.dumps(asked)], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,50000", help="chunk counts, comma-separated")
    parser.add_argument("--queries", type=int, default=41, help="questions per run (the first is the cold one)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, collection, index, mode, asked = args.child
        print(json.dumps(child(url, collection, index, mode, json.loads(asked))))
        return

    from bot.embed import resolve_precision

    print(machine())
    embedder = HashedEmbedder(resolve_precision("auto"))
    headers = ["chunks", "bot start", "start→1st answer s", "warm p50 ms", "warm p95 ms", "bot RSS MB", "bot peak MB"]
    rows, server_rows = [], []
    for n in map(int, args.sizes.split(",")):
        root = Path(tempfile.mkdtemp(prefix="qabot-scale-"))
        server = Server(root)  # a fresh server per size: its memory is that size's alone
        try:
            empty_rss = server.rss_mb()
            collection = f"scale-{n}"
            chunks = synthetic_chunks(n)
            written = load(server.url, collection, chunks, embedder)
            asked = questions(chunks, args.queries)
            index = root / "bot"
            results = {"no cache": run_child(server.url, collection, index, "no cache", asked)}
            run_child(server.url, collection, index, "cache", asked[:1])  # writes the cache (not timed)
            results["cache"] = run_child(server.url, collection, index, "cache", asked)
            change_one_file(server.url, collection, chunks, embedder)
            results["1 changed"] = run_child(server.url, collection, index, "cache", asked)
            for mode, r in results.items():
                rows.append([f"{n:,}", mode, r["first_s"], r["p50_ms"], r["p95_ms"], r["rss_mb"], r["peak_rss_mb"]])
            rss = server.rss_mb()
            server_rows.append([f"{n:,}", written["chunks_per_s"], empty_rss, rss,
                                (rss - empty_rss) * 1e6 / n / 1e3, server.disk_mb(), server.disk_mb() * 1e6 / n / 1e3])
            print(table(headers, rows[-3:]), flush=True)
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(headers, rows))
    print()
    print(table(["chunks", "server writes chunks/s", "server RSS empty MB", "server RSS MB", "RSS kB/chunk",
                 "disk MB", "disk kB/chunk"], server_rows))


if __name__ == "__main__":
    main()
