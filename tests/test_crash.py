"""Crash safety of the incremental ingest (bot/ingest/pipeline.py, bot/ingest/repair.py).

Two layers:
- fast, in-process: a fault is injected before *every* write the ingest makes (manifest rows and
  Chroma calls, one at a time: `ingest()` is handed a store and a manifest that count their
  writes), then the next ingest must leave an exact index;
- slow, real: a `python -m bot ingest` subprocess is killed with SIGKILL at several moments
  (while files are marked pending, after some are done, at a random time), files are edited
  and deleted in between, and the next run must repair everything.

"An exact index" (check_index): every manifest row `done`, chunk count == sum of n_chunks, ids
unique, and the stored ids and texts are exactly those a clean ingest of the corpus produces.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bot.config import Settings
from bot.ingest.manifest import Manifest, open_manifest, open_manifest_name
from bot.ingest.pipeline import ingest
from bot.store.chroma import VectorStore

REPO = Path(__file__).resolve().parent.parent

# --- helpers shared with the other reliability tests -------------------------------------------


class FakeEmbedder:
    """Deterministic pseudo-vectors: makes fault injection fast; same interface as Embedder."""

    def __init__(self) -> None:
        from bot.embed import MODEL_NAME, resolve_precision

        self.precision = resolve_precision("auto")
        self.settings = {"model": MODEL_NAME, "precision": self.precision, "dim": 384, "normalized": True}

    def embed(self, texts, show_progress=False):
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


WORDS = ("orbit module crew station launch cosmonaut segment agency budget partner docking "
         "propulsion science research contract decade withdraw build replace laboratory").split()


def write_corpus(corpus: Path, n_files: int, paragraphs: int = 6, seed: int = 1) -> None:
    """Prose-like files of varying length (chunk-size 100 gives ~3 chunks per paragraph)."""
    rng = random.Random(seed)
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        paras = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60))).capitalize() + "."
                 for _ in range(rng.randint(max(1, paragraphs - 2), paragraphs + 2))]
        sub = corpus / ("part%d" % (i % 3)) if i % 2 else corpus
        sub.mkdir(exist_ok=True)
        (sub / f"doc{i:03d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(paras) + "\n")


def expected_chunks(settings: Settings) -> dict[str, tuple[str, str]]:
    """id -> (source, text) that a clean ingest of the corpus produces (chunking is deterministic)."""
    from bot.ingest.chunk import chunk_document, make_splitter
    from bot.ingest.discover import discover
    from bot.ingest.load import LoadError, load_document

    from bot.config import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE

    size = settings.chunk_size or DEFAULT_CHUNK_SIZE
    overlap = DEFAULT_CHUNK_OVERLAP if settings.chunk_overlap is None else settings.chunk_overlap
    splitter = make_splitter(size, overlap)
    out = {}
    for f in discover([settings.corpus], settings.corpus, lambda s, r: None):
        try:
            doc = load_document(f.path, f.source)
        except LoadError:
            continue
        for c in chunk_document(doc, splitter):
            out[c.id] = (c.source, c.text)
    return out


def check_index(settings: Settings, expected: dict[str, tuple[str, str]] | None = None) -> int:
    """Assert the index is exact (see module docstring); returns the chunk count."""
    expected = expected_chunks(settings) if expected is None else expected
    store = VectorStore(settings)
    got = store.collection.get(include=["metadatas", "documents"])
    ids = got["ids"]
    assert len(ids) == len(set(ids)), "duplicate chunk ids"
    stored = {i: (m["source"], d) for i, m, d in zip(ids, got["metadatas"], got["documents"])}
    missing = set(expected) - set(stored)
    extra = set(stored) - set(expected)
    assert not missing and not extra, f"{len(missing)} chunks missing, {len(extra)} stray"
    assert stored == expected, "chunk texts differ from a clean ingest"
    manifest = open_manifest(settings)
    try:
        rows = manifest.files()
        assert {r["state"] for r in rows.values()} <= {"done"}, {s: r["state"] for s, r in rows.items()}
        per_source: dict[str, int] = {}
        for source, _ in expected.values():
            per_source[source] = per_source.get(source, 0) + 1
        assert {s: r["n_chunks"] for s, r in rows.items()} == per_source, "manifest rows != corpus"
        assert manifest.expected_chunks() == store.count() == len(expected)
    finally:
        manifest.close()
    return len(ids)


def subprocess_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_ingest(settings: Settings, *extra: str, log: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "bot", "ingest", "--corpus", str(settings.corpus), "--index", str(settings.index),
            "--chunk-size", str(settings.chunk_size), "--chunk-overlap", str(settings.chunk_overlap), *extra]
    err = open(log, "wb") if log else subprocess.PIPE
    return subprocess.Popen(args, cwd=settings.index.parent, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=err)


def manifest_states(settings: Settings) -> dict[str, str]:
    """source -> state, read without taking part in the writer's work (read-only connection)."""
    path = settings.index / "manifest.sqlite3"
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(db.execute("SELECT source, state FROM files").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}


def wait_for(predicate, proc: subprocess.Popen, timeout: float, poll: float = 0.005) -> bool:
    """Poll until predicate() (True) or the process ends / time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


# --- fast: a fault before every write ------------------------------------------------------------


class Crash(Exception):
    pass


def counting_writes(cls: type, writes: tuple[str, ...]) -> type:
    """A subclass of `cls` whose `writes` tell the instance's `faults` before they run (a write
    that calls another, as delete_source_except calls delete_ids, is counted for both)."""

    def counted(name: str):
        original = getattr(cls, name)

        def method(self, *args, **kwargs):
            self.faults.before_write(name)
            return original(self, *args, **kwargs)

        return method

    return type(f"Counting{cls.__name__}", (cls,), {name: counted(name) for name in writes})


CountingStore = counting_writes(VectorStore, ("upsert", "delete_source", "delete_ids", "delete_source_except"))
CountingManifest = counting_writes(Manifest, ("set_file", "set_state", "remove", "touch"))


class Faults:
    """What `ingest()` is handed to open its store and manifest: both count every write, and the
    write number `fail_at` (1-based) raises Crash instead of running."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.calls: list[str] = []

    def before_write(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise Crash(name)

    def open_store(self, settings: Settings) -> VectorStore:
        store = CountingStore(settings)
        store.faults = self
        return store

    def open_manifest(self, settings: Settings) -> Manifest:
        manifest = CountingManifest(settings.index / open_manifest_name(settings))
        manifest.faults = self
        return manifest

    def ingest(self, settings: Settings, **kwargs):
        return ingest(settings, open_store=self.open_store, open_manifest=self.open_manifest, **kwargs)


def mutate(corpus: Path) -> None:
    """Edit (longer and shorter), delete and add files, as between two ingests."""
    (corpus / "doc000.md").write_text("# Short now\n\nOnly one small paragraph remains.\n")
    (corpus / "doc002.md").write_text((corpus / "doc002.md").read_text() * 2)
    (corpus / "doc004.md").unlink()
    (corpus / "new.txt").write_text("A new file about the docking module. " * 20)


def small_settings(base: Path) -> Settings:
    corpus = base / "corpus"
    write_corpus(corpus, 6, paragraphs=3)
    return Settings(corpus=corpus, index=base / "index", chunk_size=200, chunk_overlap=0)


@pytest.fixture
def small(tmp_path):
    return small_settings(tmp_path)


def test_fault_before_any_write_is_repaired_by_the_next_run(tmp_path):
    """For every write an incremental ingest makes (with edits, a deletion and an addition to
    apply): fail just before it, fail again somewhere in the repairing run, then run clean."""
    fake = FakeEmbedder()

    def scenario(name: str, fail_at: int | None, fail_again: int | None) -> int:
        settings = small_settings(tmp_path / name)
        options = dict(embedder=fake, embed_group=16)  # several groups, so faults land between them
        ingest(settings, **options)
        mutate(settings.corpus)
        faults = Faults(fail_at)
        try:
            faults.ingest(settings, **options)
        except Crash:
            try:
                Faults(fail_again).ingest(settings, **options)
            except Crash:
                pass
        else:
            assert fail_at is None or fail_at > len(faults.calls)
        report = ingest(settings, **options)
        assert check_index(settings) == report.chunks_total, f"fault before write {fail_at}/{fail_again}"
        again = ingest(settings, **options)  # ...and the run after that has nothing to do
        assert not again.changed and again.chunks_embedded == 0, f"fault before write {fail_at}/{fail_again}"
        return len(faults.calls)

    n_writes = scenario("probe", None, None)
    assert n_writes >= 12
    for fail_at in range(1, n_writes + 1):
        scenario(f"f{fail_at}", fail_at, 1 + fail_at % 9)


def test_fault_during_rebuild_is_repaired(small):
    fake = FakeEmbedder()
    ingest(small, embedder=fake)
    expected = expected_chunks(small)
    for fail_at in (1, 2, 5, 20):
        with pytest.raises(Crash):
            Faults(fail_at).ingest(small, rebuild=True, embedder=fake)
        ingest(small, embedder=fake)
        check_index(small, expected)


def test_deleting_state_left_by_a_crash_is_finished(small):
    fake = FakeEmbedder()
    ingest(small, embedder=fake)
    (small.corpus / "doc000.md").unlink()
    manifest = open_manifest(small)
    manifest.set_state("doc000.md", "deleting")  # crash between marking and deleting
    manifest.close()
    report = ingest(small, embedder=fake)
    assert report.repaired >= 1
    check_index(small)


def test_chunks_missing_behind_a_done_row_are_re_embedded(small):
    """Damage no crash of ours should cause (e.g. a Chroma write lost) is still found by the count check."""
    fake = FakeEmbedder()
    ingest(small, embedder=fake)
    store = VectorStore(small)
    victim = [c.id for c in store.all_chunks(include_text=False) if c.source == "doc002.md"][:1]
    store.delete_ids(victim)
    report = ingest(small, embedder=fake)
    assert report.repaired >= 1 and report.added == 1
    check_index(small)


def test_new_chunk_settings_rechunk_every_file(small):
    """A mixed index (old files in old chunks, edited ones in new) would be a silent gap."""
    fake = FakeEmbedder()
    ingest(small, embedder=fake)
    smaller = small.with_(chunk_size=120)
    report = ingest(smaller, embedder=fake)
    assert report.updated == 6 and report.unchanged == 0
    check_index(smaller)
    assert not ingest(smaller, embedder=fake).changed


# --- slow: SIGKILL a real ingest -----------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_several_moments_then_rerun_repairs(tmp_path, embedder):
    """Kill `python -m bot ingest` (SIGKILL) while files are pending, after some are done, at a
    random moment (with edits and deletions in between); the next run leaves an exact index."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 28, paragraphs=5)
    settings = Settings(corpus=corpus, index=tmp_path / "index", chunk_size=100, chunk_overlap=0)
    n_expected = len(expected_chunks(settings))
    assert n_expected > 300  # two embedding groups or more: several write phases to land in
    rng = random.Random(os.getpid())
    moments = [
        ("a file is pending", lambda done, states: "pending" in states.values()),
        ("more files done", lambda done, states: sum(s == "done" for s in states.values()) >= done + 3),
        ("random", None),
    ]
    killed = []
    for i, (name, moment) in enumerate(moments):
        if i == 1:
            mutate(corpus)  # the next run must repair *and* apply edits/deletions
        done_before = sum(s == "done" for s in manifest_states(settings).values())
        proc = start_ingest(settings, log=tmp_path / f"run{i}.log")
        try:
            if moment is None:
                started = wait_for(lambda: (settings.index / "manifest.sqlite3").exists(), proc, 120)
                time.sleep(rng.uniform(0.5, 6.0))
                hit = started and proc.poll() is None
            else:
                hit = wait_for(lambda: moment(done_before, manifest_states(settings)), proc, 240)
            if hit:
                proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log = (tmp_path / f"run{i}.log").read_text(errors="replace")
        assert "Traceback" not in log, log
        killed.append((name, hit, proc.returncode))
    assert killed[0][1] and killed[0][2] == -signal.SIGKILL, killed  # the pending window was hit

    # The next run (in-process, sharing the session's model) repairs and completes.
    report = ingest(settings, embedder=embedder)
    expected = expected_chunks(settings)
    assert check_index(settings, expected) == report.chunks_total == len(expected)
    # Vectors are there too, not just rows: every chunk is found by its own vector (repeated
    # text makes identical chunks: then an identical one may come first).
    store = VectorStore(settings)
    got = store.collection.get(include=["embeddings", "documents"])
    for chunk_id, vector, text in zip(got["ids"], got["embeddings"], got["documents"]):
        hits = [(c.id, c.text) for c, score in store.query(vector, 3) if score > 0.999]
        assert (chunk_id, text) in hits or hits[0][1] == text, (chunk_id, hits)
    again = ingest(settings, embedder=embedder)
    assert again.chunks_embedded == 0 and not again.changed, killed
    print("kills:", killed, "repaired:", report.repaired)
