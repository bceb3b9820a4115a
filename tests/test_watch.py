"""`qabot ingest --watch`: files added, edited, deleted (and folders moved) while watching are
re-indexed in batches, one summary line each; Ctrl-C ends it with exit code 0."""
from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from bot.config import Settings
from bot.ingest.pipeline import ingest
from bot.ingest.report import IngestReport
from bot.store.chroma import VectorStore
from bot.ingest.watch import watch
from test_crash import check_index, subprocess_env


class Watcher:
    """bot.ingest.watch.watch in a thread; batches arrive on a queue."""

    def __init__(self, settings: Settings, paths=None) -> None:
        self.lines: list[str] = []
        self.batches: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=watch, args=(settings, paths),
            kwargs=dict(echo=self.lines.append, stop_event=self.stop, on_batch=self.batches.put), daemon=True)

    def __enter__(self) -> "Watcher":
        self.thread.start()
        time.sleep(2.0)  # let the file system watcher start (no event tells when it has)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()

    def next_batch(self, timeout: float = 30) -> IngestReport:
        report = self.batches.get(timeout=timeout)
        assert isinstance(report, IngestReport), report
        return report

    def no_batch(self, wait: float = 3.0) -> None:
        with pytest.raises(queue.Empty):
            self.batches.get(timeout=wait)


def sources(settings: Settings) -> set[str]:
    return {c.source for c in VectorStore(settings).all_chunks(include_text=False)}


def test_watch_reindexes_added_edited_deleted_files_and_folders(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha is the first letter of the Greek alphabet. " * 10)
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    ingest(settings, embedder=embedder)

    with Watcher(settings) as w:
        (corpus / "b.md").write_text("# Bravo\n\nBravo is a word for the letter B. " * 5)
        r = w.next_batch()
        assert (r.added, r.deleted) == (1, 0) and sources(settings) == {"a.txt", "b.md"}

        (corpus / "b.md").write_text("# Bravo\n\nBravo was edited. " * 5)
        r = w.next_batch()
        assert r.updated == 1 and r.chunks_embedded >= 1
        assert any("edited" in c.text for c in VectorStore(settings).all_chunks())

        (corpus / "b.md").unlink()
        r = w.next_batch()
        assert r.deleted == 1 and sources(settings) == {"a.txt"}
        assert not any(l.startswith("skipped") for l in w.lines)

        (corpus / "notes.csv").write_text("unsupported,file\n")  # not a document: no batch
        (corpus / ".hidden.txt").write_text("hidden files are not indexed")
        w.no_batch()

        folder = tmp_path / "outside"
        (folder / "deep").mkdir(parents=True)
        (folder / "deep" / "c.txt").write_text("Charlie is a folder moved into the corpus. " * 5)
        (folder / "bad.txt").write_bytes(b"\xff\xfe not utf-8 \x00\x01")
        shutil.move(str(folder), str(corpus / "moved"))  # one event for the folder, none for its files
        r = w.next_batch()
        assert r.added == 1 and sources(settings) == {"a.txt", "moved/deep/c.txt"}
        assert [s for s, _ in r.skipped] == ["moved/bad.txt"]
        assert any(l.startswith("skipped moved/bad.txt: binary file") for l in w.lines), w.lines

        shutil.move(str(corpus / "moved"), str(tmp_path / "gone"))
        r = w.next_batch()
        assert r.deleted == 1 and sources(settings) == {"a.txt"}
    check_index(settings)
    summaries = [l for l in w.lines if " indexed: " in l]
    assert len(summaries) == 5 and all(l.startswith("[") for l in summaries)
    assert w.lines[-1] == "Stopped watching."


@pytest.mark.slow
def test_watch_given_files_only_follows_those_files(tmp_path, embedder):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.md").write_text("# Keep\n\nThis note is watched. " * 5)
    (notes / "other.md").write_text("# Other\n\nThis note is not watched. " * 5)
    settings = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index")
    paths = [notes / "keep.md"]
    ingest(settings, paths, embedder=embedder)
    with Watcher(settings, paths) as w:
        (notes / "other.md").write_text("changed but not ours")
        w.no_batch(2.5)
        (notes / "keep.md").write_text("# Keep\n\nThis note was edited. " * 5)
        assert w.next_batch().updated == 1
        (notes / "keep.md").unlink()  # a named file that goes away loses its chunks
        r = w.next_batch()
        assert r.deleted == 1 and VectorStore(settings).count() == 0


@pytest.mark.slow
def test_ingest_watch_command_until_ctrl_c(tmp_path):
    """The front door: `python -m bot ingest --watch`, then SIGINT: exit 0, no traceback."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha is the first letter. " * 10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "ingest", "--watch", "--corpus", str(corpus), "--index", str(tmp_path / "index")],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l.rstrip("\n")) for l in proc.stderr], daemon=True).start()
    seen: list[str] = []

    def wait_line(text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert proc.poll() is None, "\n".join(seen)
                continue
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}:\n" + "\n".join(seen))

    try:
        wait_line("Watching")
        time.sleep(1.0)
        (corpus / "b.md").write_text("# Bravo\n\nBravo is second. " * 5)
        assert "1 added" in wait_line(" indexed: ")
        (corpus / "b.md").unlink()
        assert "1 deleted" in wait_line(" indexed: ")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = proc.stderr.read() if not proc.stderr.closed else ""
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    output = "\n".join(seen) + rest
    assert "Stopped watching." in output and "Traceback" not in output, output
