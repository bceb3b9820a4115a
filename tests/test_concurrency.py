"""Concurrency: two ingests on one index are serialized by the ingest lock (the second waits and
says so); queries from other clients and processes keep working while an ingest writes."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bot.config import Settings
from bot.ingest.pipeline import ingest
from bot.store.chroma import VectorStore
from test_crash import check_index, start_ingest, subprocess_env, wait_for, write_corpus

pytestmark = pytest.mark.slow  # each test starts ingest subprocesses that load the model


class GatedEmbedder:
    """The session's embedder, running `before_first` at its first call: the ingest that uses it
    holds the ingest lock by then, and has everything still to embed."""

    def __init__(self, inner, before_first) -> None:
        self.inner, self.before_first = inner, before_first
        self.precision, self.settings = inner.precision, inner.settings

    def embed(self, texts, show_progress=False):
        before_first, self.before_first = self.before_first, None
        if before_first:
            before_first()
        return self.inner.embed(texts, show_progress)


def test_second_ingest_waits_for_the_first(tmp_path, embedder):
    """The first ingest (in-process) starts the second (`python -m bot ingest`) while it holds the
    lock, and goes on only once the second says it is waiting: no race on who is faster."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 10, paragraphs=4)
    settings = Settings(corpus=corpus, index=tmp_path / "index", chunk_size=100, chunk_overlap=0)
    log2 = tmp_path / "second.log"
    started: list[subprocess.Popen] = []

    def start_second_and_let_it_wait() -> None:
        second = start_ingest(settings, log=log2)
        started.append(second)
        assert wait_for(lambda: "waiting" in log2.read_text(errors="replace"), second, 120), log2.read_text()

    first_waited: list[bool] = []
    try:
        first = ingest(settings, embedder=GatedEmbedder(embedder, start_second_and_let_it_wait),
                       on_wait=lambda: first_waited.append(True))
        assert started and started[0].wait(300) == 0
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log2_text = log2.read_text()
    assert "Another ingest is running on this index; waiting" in log2_text, log2_text
    assert first_waited == []
    # The second ran only after the first had finished: it found everything done, embedded nothing.
    assert first.added == 10 and "0 chunks embedded" in log2_text and "10 unchanged" in log2_text, \
        (first.summary_line(), log2_text)
    assert "Traceback" not in log2_text
    check_index(settings)


READER = """
import json, sys, time
from pathlib import Path
import numpy as np
from bot.config import Settings
from bot.store.chroma import VectorStore
settings = Settings(corpus=Path(sys.argv[1]), index=Path(sys.argv[2]))
stop = Path(sys.argv[3])
originals = set(json.loads(sys.argv[5]))
rng = np.random.default_rng(0)
ok, errors, counts = 0, [], set()
Path(sys.argv[4]).touch()
while not stop.exists():
    try:
        store = VectorStore(settings, create=False)
        v = rng.standard_normal(384).astype("float32"); v /= np.linalg.norm(v)
        hits = store.query(v.tolist(), 5)
        assert hits and all(c.text for c, _ in hits), hits
        counts.add(store.count())
        sources = {m["source"] for m in store.collection.get(include=["metadatas"])["metadatas"]}
        assert originals <= sources, f"files being updated had no chunks: {sorted(originals - sources)}"
        ok += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
    time.sleep(0.05)
print(json.dumps({"ok": ok, "errors": errors[:5], "n_errors": len(errors), "counts": sorted(counts)}))
"""


def test_queries_keep_working_during_an_ingest(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 4, paragraphs=4, seed=1)
    settings = Settings(corpus=corpus, index=tmp_path / "index", chunk_size=100, chunk_overlap=0)
    ingest(settings, embedder=embedder)  # this process now holds an open client too
    before = VectorStore(settings).count()
    originals = sorted({c.source for c in VectorStore(settings).all_chunks(include_text=False)})
    write_corpus(corpus, 4, paragraphs=6, seed=3)  # the same files, edited: updated in place
    write_corpus(corpus / "more", 10, paragraphs=4, seed=2)

    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(corpus), str(settings.index), str(stop), str(ready),
                               json.dumps(originals)],
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = None
    in_process = {"ok": 0, "errors": []}
    done = threading.Event()

    def query_here():
        rng = np.random.default_rng(1)
        while not done.is_set():
            try:
                v = rng.standard_normal(384).astype(np.float32)
                assert VectorStore(settings).query((v / np.linalg.norm(v)).tolist(), 5)
                in_process["ok"] += 1
            except Exception as exc:
                in_process["errors"].append(f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.05)

    thread = threading.Thread(target=query_here, daemon=True)
    try:
        assert wait_for(ready.exists, reader, 120, poll=0.1), reader.stderr.read() if reader.poll() is not None else ""
        thread.start()
        writer = start_ingest(settings, log=tmp_path / "writer.log")
        assert writer.wait(300) == 0, (tmp_path / "writer.log").read_text()
        time.sleep(1.0)  # a few queries after the ingest finished
    finally:
        done.set()
        stop.touch()
        if thread.ident is not None:  # started
            thread.join(30)
        try:
            out, err = reader.communicate(timeout=60)
        finally:
            if reader.poll() is None:
                reader.kill()
            if writer is not None and writer.poll() is None:
                writer.kill()
                writer.wait()
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"stderr": err}
    assert stats.get("n_errors") == 0 and stats["ok"] > 10, stats
    assert in_process["errors"] == [] and in_process["ok"] > 10, in_process
    after = check_index(settings)
    assert after > before
    # The other process saw the index before, during and after the writes.
    assert min(stats["counts"]) == before and max(stats["counts"]) == after, stats
