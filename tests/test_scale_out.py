"""Scale-out on a Chroma server: several machines ingest into one collection.

"Machines" are `python -m bot ingest` processes with separate --index folders (nothing shared but
the server and the corpus folder), against a real `chroma run` on loopback. The manifest and the
lease live on the server (bot/store/server_manifest.py). After every scenario the collection must
be exact (tests/test_crash.py's check_index: every chunk once, none missing, none stray, every
manifest row `done`).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.config import Settings
from bot.ingest.manifest import open_manifest
from bot.store.chroma import VectorStore
from bot.store.server_manifest import ServerLease, ServerManifest
from test_crash import check_index, subprocess_env, wait_for, write_corpus
from test_server import CHROMA, SUMMARY, ChromaServer

pytestmark = pytest.mark.skipif(not CHROMA.exists(), reason="the chroma server CLI is not installed")

WAITED = "Another ingest is running"


@pytest.fixture
def server(tmp_path):
    srv = ChromaServer(tmp_path / "chroma-data").start()
    yield srv
    srv.stop()


@pytest.fixture
def corpus(tmp_path):
    """Two folders, a/ and b/, of prose files (about 100 chunks each at chunk size 100)."""
    root = tmp_path / "corpus"
    write_corpus(root / "a", 6, seed=1)
    write_corpus(root / "b", 6, seed=2)
    return root


def machine(url: str, corpus: Path, index: Path, *paths: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "bot", "ingest", "--corpus", str(corpus), "--index", str(index),
            "--chroma-url", url, "--chunk-size", "100", "--chunk-overlap", "0", *map(str, paths)]
    return subprocess.Popen(args, env=subprocess_env(), cwd=index.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[dict, str]:
    """The run's summary line as numbers, and its stderr."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    match = SUMMARY.search(err)
    assert match, err
    keys = ("added", "updated", "unchanged", "deleted", "skipped", "chunks_embedded", "total")
    return dict(zip(keys, map(int, match.groups()))), err


def settings_for(server, corpus: Path, tmp_path: Path) -> Settings:
    return Settings(corpus=corpus, index=tmp_path / "checker", chroma_url=server.url, chunk_size=100,
                    chunk_overlap=0)


@pytest.mark.slow  # real processes (each loads the model), as test_crash.py's SIGKILL test
def test_disjoint_folders_at_once_and_the_same_folder_in_turn(server, corpus, tmp_path):
    # Disjoint folders from two machines at the same time: neither waits for the other.
    one = machine(server.url, corpus, tmp_path / "m1", corpus / "a")
    two = machine(server.url, corpus, tmp_path / "m2", corpus / "b")
    (r1, e1), (r2, e2) = finish(one), finish(two)
    assert WAITED not in e1 + e2
    assert r1["added"] == r2["added"] == 6
    settings = settings_for(server, corpus, tmp_path)
    total = check_index(settings)
    assert r1["chunks_embedded"] + r2["chunks_embedded"] == total

    # The same folder from both, after both folders changed: one run does the work, the other
    # waits for it and then finds nothing left to do. Nothing is embedded twice. (When both claim
    # at the same moment, both see the overlap and back off once, so both may say they waited.)
    for name in ("a/doc000.md", "b/doc000.md"):
        path = corpus / name
        path.write_text(path.read_text() + "\n\nA closing paragraph added later, with new words.\n")
    one = machine(server.url, corpus, tmp_path / "m1")
    two = machine(server.url, corpus, tmp_path / "m2")
    (r1, e1), (r2, e2) = finish(one), finish(two)
    assert WAITED in e1 + e2, (e1, e2)
    assert sorted([r1["updated"], r2["updated"]]) == [0, 2]
    assert sorted([r1["unchanged"], r2["unchanged"]]) == [10, 12]
    check_index(settings)


def _states(settings: Settings) -> dict[str, str]:
    manifest = open_manifest(settings)
    try:
        return {s: r["state"] for s, r in manifest.files().items()}
    finally:
        manifest.close()


@pytest.mark.slow
def test_a_machine_killed_mid_ingest_is_repaired_by_the_next_run(server, corpus, tmp_path):
    settings = settings_for(server, corpus, tmp_path)
    # Machine 1 ingests a/ and is SIGKILLed once some of its files are written; machine 2
    # ingests b/ meanwhile and must neither wait for it nor touch its half-done rows.
    one = machine(server.url, corpus, tmp_path / "m1", corpus / "a")
    two = machine(server.url, corpus, tmp_path / "m2", corpus / "b")
    assert wait_for(lambda: sum(1 for s, st in _states(settings).items() if s.startswith("a/")) >= 2,
                    one, timeout=90, poll=0.05), one.stderr.read() if one.poll() is not None else "too slow"
    one.send_signal(signal.SIGKILL)
    assert one.wait() == -signal.SIGKILL  # killed, not finished
    r2, e2 = finish(two)
    assert r2["added"] == 6 and WAITED not in e2
    left = {s: st for s, st in _states(settings).items() if s.startswith("a/")}
    assert left and len(left) < 6 or "pending" in left.values(), left  # killed part-way

    # The next run over the whole corpus, from machine 2: the dead machine's lease does not block
    # it (same host, its process is gone), and it repairs a/ without touching b/.
    r3, e3 = finish(machine(server.url, corpus, tmp_path / "m2"))
    assert WAITED not in e3
    assert r3["unchanged"] >= 6 and r3["added"] + r3["unchanged"] == 12
    check_index(settings)


def test_a_lease_from_another_machine_blocks_until_it_expires(server, tmp_path):
    """A claim from a crashed ingester on another host cannot be checked for a live process: it
    holds its folder until its lease runs out, then the folder is free."""
    settings = Settings(corpus=tmp_path, index=tmp_path / "index", chroma_url=server.url)
    manifest = ServerManifest(VectorStore(settings), settings.collection)
    crashed = ServerLease(manifest, ["a"], seconds=2.0)
    meta = crashed._meta() | {"host": "another-machine"}
    manifest._upsert([crashed.id], [meta])  # claimed, never renewed, never released

    disjoint = ServerLease(manifest, ["b"], seconds=2.0)
    started = time.monotonic()
    disjoint.acquire()
    assert time.monotonic() - started < 1.0
    disjoint.release()

    waits: list[bool] = []
    overlapping = ServerLease(manifest, [""], seconds=2.0)
    overlapping.acquire(on_wait=lambda: waits.append(True))
    assert waits and time.monotonic() - started >= 1.5
    overlapping.release()
    assert not manifest._records({"kind": "lease"})  # the expired claim was cleaned up, mine released


def _prose_chunks(n_files: int, seed: int, tag: str = "") -> list:
    from bot.ingest.chunk import chunk_document, make_splitter
    from bot.ingest.load import Document

    import random

    from test_crash import WORDS

    rng = random.Random(seed)
    splitter = make_splitter(300, 0)
    names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Mount Kenya"]
    chunks = []
    for i in range(n_files):
        text = " ".join(" ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + f" met {rng.choice(names)}{tag}."
                        for _ in range(8))
        chunks += chunk_document(Document(source=f"f{i}.md", title=f"File {i}", text=text), splitter)
    return chunks


def test_incremental_bm25_scores_as_bm25s_and_an_update_equals_a_fresh_build(tmp_path):
    """The server-mode BM25 (updated file by file) ranks and weighs words exactly as the embedded
    mode's bm25s index over the same chunks, also after files changed and went away."""
    from bot.qa.bm25_incremental import IncrementalBM25
    from bot.qa.retrieve import BM25Index

    chunks = _prose_chunks(6, seed=1)
    incremental = IncrementalBM25(chunks, {f"f{i}.md": "v1" for i in range(6)})
    incremental.save(tmp_path / "bm25", "g1")
    loaded = IncrementalBM25.load(tmp_path / "bm25")
    assert loaded.generation == "g1" and len(loaded.chunks) == len(chunks)

    # f1 changed (new words, a new name), f4 deleted: update the loaded cache.
    changed = [c for c in _prose_chunks(6, seed=9, tag=" Xenonthruster") if c.source == "f1.md"]
    kept = [c for c in chunks if c.source not in ("f1.md", "f4.md")]
    loaded.update({"f1.md", "f4.md"}, changed, {"f1.md": "v2"})
    for index, corpus in ((incremental, chunks), (loaded, kept + changed)):
        reference = BM25Index(corpus)
        for query in ("grace hopper met", "xenonthruster lovelace", "kenya kenya mount", "nothing-here"):
            got = [(c.id, round(s, 4)) for c, s in index.search(query, 10)]
            want = [(c.id, round(s, 4)) for c, s in reference.search(query, 10)]
            assert got == want, query
        for term in ("grace", "xenonthruster", "unseen"):
            assert index.idf(term) == pytest.approx(reference.idf(term))
        assert index.nouns.to_json() == reference.nouns.to_json()
    assert loaded.search("xenonthruster", 3)[0][0].source == "f1.md"
    assert not any(c.source == "f4.md" for c in loaded.chunks)
