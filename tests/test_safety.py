"""Nothing lost (issue #16, items 1-4, 7, 9, 10): an index remembers its corpus and answering
commands never remove its documents; an ingest that would remove all or most of them asks first;
a damaged index is one line and `--rebuild` always starts over; vectors that went missing are
noticed and re-embedded; a chunking change is announced; an unreadable folder is said and its
documents kept; an empty corpus is an error; progress moves per batch with an exact total;
Ctrl-C during an ingest keeps what was written and says so."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.config import Settings
from bot.embed.batching import MAX_BATCH
from bot.errors import IndexProblem
from bot.ingest.manifest import corpus_key, open_manifest
from bot.ingest.pipeline import EMBED_GROUP, ingest
from bot.ingest.status import corpus_changed
from bot.store.chroma import forget_embedded
from test_crash import check_index, manifest_states, subprocess_env, wait_for, write_corpus

QUESTION = "what does the alpha file say?"


def qabot(*args: str, input: str | None = None):
    """The command in-process (one line per outcome is checked on its stderr)."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def make_corpus(folder: Path, names=("alpha", "bravo", "charlie")) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.txt").write_text(f"The {name} file talks about {name} and nothing else. " * 30)
    return folder


def build(tmp_path: Path, names=("alpha", "bravo", "charlie")) -> tuple[Path, Path]:
    """A corpus and an index built from it by `qabot ingest`."""
    corpus, index = make_corpus(tmp_path / "A", names), tmp_path / "index"
    result = qabot("ingest", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    return corpus, index


def stats(index: Path) -> dict:
    """What `qabot stats --json` says the index holds (not its size: answering writes a BM25 cache)."""
    result = qabot("stats", "--json", "--index", str(index))
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    info.pop("index_bytes")
    return info


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def fresh_process_view(index: Path) -> None:
    """Drop the Chroma this process holds open on the index, as a new `qabot` process would
    start without it (so that damage done to its files below is seen)."""
    forget_embedded(index / "chroma")


# --- 1. the index remembers its corpus ---------------------------------------------------------


def test_answering_never_resyncs_an_index_built_from_another_folder(tmp_path):
    corpus, index = build(tmp_path)
    assert stats(index)["corpus"] == corpus_key(corpus)
    before = stats(index)
    other = make_corpus(tmp_path / "B", names=("zulu",))

    asked = qabot("ask", "--corpus", str(other), "--index", str(index), QUESTION)
    assert asked.exit_code == 0, asked.stderr
    assert one_line(asked.stderr) == (f"index built from {corpus_key(corpus)}; not re-syncing it to {other} "
                                      f"(run `qabot ingest --corpus {other} --index {index}` to change that)")
    assert "alpha" in asked.stdout  # answered from the index as it is
    chatted = qabot("chat", "--corpus", str(other), "--index", str(index), input=QUESTION + "\n")
    assert chatted.exit_code == 0 and "not re-syncing" in chatted.stderr, chatted.stderr
    assert stats(index) == before

    # The Discord bot's /reindex neither.
    from bot.discord_bot.command import reindex

    with pytest.raises(IndexProblem, match="not re-syncing it to"):
        reindex(Settings(corpus=other, index=index))
    assert stats(index) == before


def test_an_index_that_does_not_remember_its_corpus_is_not_emptied_by_a_question(tmp_path):
    corpus, index = build(tmp_path)
    manifest = open_manifest(Settings(index=index))
    manifest.db.execute("DELETE FROM meta WHERE key = 'corpus'")  # as an index made before it remembered
    manifest.close()
    other = make_corpus(tmp_path / "B", names=("zulu",))
    asked = qabot("ask", "--corpus", str(other), "--index", str(index), QUESTION)
    assert asked.exit_code == 0, asked.stderr
    line = one_line(asked.stderr)
    assert line.startswith(f"not re-syncing the index to {other}: that would remove all 3 documents"), line
    assert stats(index)["documents"] == 3


def test_ingest_that_would_remove_all_or_most_documents_is_refused_without_a_terminal(tmp_path):
    corpus, index = build(tmp_path)
    before = stats(index)
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = qabot("ingest", "--corpus", str(empty), "--index", str(index))
    assert refused.exit_code == 2
    line = one_line(refused.stderr)
    assert "would remove all 3 documents" in line and "--rebuild" in line and "--yes" in line, line
    assert stats(index) == before

    (corpus / "alpha.txt").unlink()
    (corpus / "bravo.txt").unlink()  # 2 of 3: most of them
    refused = qabot("ingest", "--corpus", str(corpus), "--index", str(index))
    assert refused.exit_code == 2 and "would remove 2 of the 3 documents" in one_line(refused.stderr)
    assert stats(index)["documents"] == 3

    done = qabot("ingest", "--corpus", str(corpus), "--index", str(index), "--yes")
    assert done.exit_code == 0 and "2 deleted" in done.stderr, done.stderr
    assert stats(index)["documents"] == 1

    emptied = qabot("ingest", "--corpus", str(empty), "--index", str(index), "--yes")
    assert emptied.exit_code == 2
    assert f"Error: no indexable documents in {empty} (0 skipped)" in emptied.stderr, emptied.stderr
    asked = qabot("ask", "--corpus", str(empty), "--index", str(index), QUESTION)
    assert asked.exit_code == 2
    line = one_line(asked.stderr)
    assert line.startswith(f"Error: the index at {index} is empty; put documents") and "qabot ingest" in line, line


def spawn_on_a_terminal(args: list[str], cwd: Path):
    """`python ARGS` with a pseudo-terminal as its stdin/stdout/stderr, and pexpect on the other
    end. Started by subprocess (vfork + exec), not pexpect.spawn's pty.fork(): late in a full
    suite this pytest process holds native thread pools (torch, ONNX Runtime, OpenVINO) whose
    fork handlers made the forked child die of SIGSEGV before it could exec (seen in full-suite
    runs only, never alone)."""
    import pexpect.fdpexpect

    terminal, side = os.openpty()
    process = subprocess.Popen([sys.executable, *args], stdin=side, stdout=side, stderr=side,
                               env=subprocess_env(), cwd=str(cwd))
    os.close(side)
    return process, pexpect.fdpexpect.fdspawn(terminal, encoding="utf-8", timeout=120)


def test_ingest_on_a_terminal_asks_before_removing_every_document(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    corpus, index = build(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["-m", "bot", "ingest", "--corpus", str(empty), "--index", str(index)]
    for answer, code, documents in (("n", 2, 3), ("y", 2, 0)):
        process, child = spawn_on_a_terminal(args, tmp_path)
        try:
            found = child.expect([r"would remove all 3 documents of the index .*Remove them\? \[y/N\]", pexpect.EOF])
            assert found == 0, f"the child ended before asking: exit {process.wait(10)}, output {child.before!r}"
            child.sendline(answer)
            try:
                child.expect(pexpect.EOF)
            except OSError:  # EIO: the terminal's other side closed when the child exited
                pass
        finally:
            child.close()
        assert process.wait(60) == code, child.before
        assert stats(index)["documents"] == documents


# --- 2. a damaged index ------------------------------------------------------------------------


def garbage_header(path: Path) -> None:
    path.write_bytes(os.urandom(5000))


def truncated(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(max(4096, path.stat().st_size // 3))


def garbage_inside(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(2 * 4096)
        f.write(os.urandom(max(4096, path.stat().st_size // 2 - 2 * 4096)))


@pytest.mark.parametrize("damage", [garbage_header, truncated, garbage_inside])
@pytest.mark.parametrize("name", ["manifest.sqlite3", "chroma/chroma.sqlite3"])
def test_damaged_index_is_one_line_and_rebuild_starts_over(tmp_path, name, damage):
    corpus, index = build(tmp_path)
    (index / "feedback.sqlite3").write_bytes(b"votes: not qabot's index, must survive a rebuild")
    fresh_process_view(index)
    damage(index / name)
    for args in (["stats"], ["ask", QUESTION], ["ingest"]):
        result = qabot(*args, "--corpus", str(corpus), "--index", str(index))
        assert result.exit_code == 2, (args, result.stderr)
        line = one_line(result.stderr)
        assert line.startswith(f"Error: {index / name} is damaged (") and \
            line.endswith("; run `qabot ingest --rebuild`"), (args, line)
    rebuilt = qabot("ingest", "--rebuild", "--corpus", str(corpus), "--index", str(index))
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert "3 added" in rebuilt.stderr and "Traceback" not in rebuilt.stderr
    assert (index / "feedback.sqlite3").read_bytes().startswith(b"votes")
    assert stats(index)["documents"] == 3
    asked = qabot("ask", "--corpus", str(corpus), "--index", str(index), QUESTION)
    assert asked.exit_code == 0 and "alpha" in asked.stdout, asked.stderr


def test_rebuild_starts_over_whatever_is_in_the_way(tmp_path):
    corpus, index = build(tmp_path)
    fresh_process_view(index)
    shutil.rmtree(index / "chroma")
    (index / "chroma").write_text("a file where the vector store's folder should be")
    (index / "manifest.sqlite3").unlink()
    (index / "manifest.sqlite3").mkdir()  # and a folder where the manifest should be
    result = qabot("ingest", "--rebuild", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    assert stats(index)["documents"] == 3


# --- 3. vectors that went missing ----------------------------------------------------------------


def test_deleted_vector_database_is_noticed_and_re_embedded(tmp_path):
    corpus, index = build(tmp_path)
    chunks = stats(index)["chunks"]
    fresh_process_view(index)
    (index / "chroma" / "chroma.sqlite3").unlink()

    shown = qabot("stats", "--index", str(index))
    assert shown.exit_code == 0
    warning = one_line(shown.stderr)
    assert warning.startswith(f"Warning: the vector store holds none of the index's {chunks} chunks") \
        and "chroma.sqlite3 is missing" in warning, warning

    other = make_corpus(tmp_path / "B", names=("zulu",))  # not its corpus: nothing to repair from
    refused = qabot("ask", "--corpus", str(other), "--index", str(index), QUESTION)
    assert refused.exit_code == 2
    assert f"Error: the vector store holds none of the index's {chunks} chunks" in refused.stderr, refused.stderr

    asked = qabot("ask", "--corpus", str(corpus), "--index", str(index), QUESTION)
    assert asked.exit_code == 0, asked.stderr
    assert f"the vector store lacks {chunks} of the index's {chunks} chunks; embedding them again" in asked.stderr
    assert "alpha" in asked.stdout and "couldn't find" not in asked.stdout
    after = stats(index)
    assert after["chunks"] == after["manifest_chunks"] == chunks


# --- 4. chunking changes are announced; overlap must be smaller than the size ------------------


def test_chunking_change_says_what_it_re_embeds(tmp_path):
    corpus, index = build(tmp_path)
    result = qabot("ingest", "--corpus", str(corpus), "--index", str(index), "--chunk-size", "300")
    assert result.exit_code == 0
    assert "chunking changed (1000/150 → 300/150): re-embedding all 3 files" in result.stderr, result.stderr
    assert "3 updated" in result.stderr


def test_an_index_made_by_an_older_extraction_reads_those_files_again(tmp_path):
    # An index whose HTML text came from an older extraction (here: before the versions were
    # recorded, as every index made before them) gets the HTML read and embedded again by the next
    # plain ingest, and only the HTML: the answers no longer quote the old text.
    corpus, index = build(tmp_path)
    (corpus / "table.html").write_text("<html><body><h1>Commands</h1><table><tr><td>tar -xvf foo.tar</td>"
                                       "<td>extract files from foo.tar</td></tr></table></body></html>")
    assert qabot("ingest", "--corpus", str(corpus), "--index", str(index)).exit_code == 0
    unchanged = qabot("ingest", "--corpus", str(corpus), "--index", str(index))
    assert "4 unchanged" in unchanged.stderr and "again" not in unchanged.stderr, unchanged.stderr
    manifest = open_manifest(Settings(corpus=corpus, index=index))
    try:
        manifest.put("extraction", {"html": 1})
    finally:
        manifest.close()
    result = qabot("ingest", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "this version of qabot reads html files differently: reading and embedding 1 file again" in said, said
    assert "1 updated" in result.stderr and "3 unchanged" in result.stderr, result.stderr
    again = qabot("ingest", "--corpus", str(corpus), "--index", str(index))
    assert "4 unchanged" in again.stderr and "again" not in again.stderr, again.stderr


@pytest.mark.parametrize("flags", [["--chunk-size", "300", "--chunk-overlap", "300"],
                                   ["--chunk-size", "300", "--chunk-overlap", "1000"],
                                   ["--chunk-overlap", "1000"]],  # with the index's own size, 1000
                         ids=["equal", "larger", "index-size"])
def test_overlap_not_smaller_than_the_chunk_size_is_refused(tmp_path, flags):
    corpus, index = build(tmp_path)
    before = stats(index)
    result = qabot("ingest", "--corpus", str(corpus), "--index", str(index), *flags)
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert line.startswith("Error: chunk overlap (--chunk-overlap, QABOT_CHUNK_OVERLAP) must be smaller than "
                           "the chunk size"), line
    assert stats(index) == before


# --- 9. unreadable folders and empty corpora ------------------------------------------------------


def test_unreadable_folder_is_said_and_its_documents_are_kept(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "A")
    make_corpus(corpus / "locked", names=("delta", "echo"))
    index = tmp_path / "index"
    assert qabot("ingest", "--corpus", str(corpus), "--index", str(index)).exit_code == 0
    assert stats(index)["documents"] == 5

    # What a folder without read permission does to a user who is not root: listing it fails.
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(os.fspath(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (corpus / "alpha.txt").write_text("The alpha file changed. " * 30)
    result = qabot("ingest", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    assert "skipped locked/: permission denied" in result.stderr.splitlines(), result.stderr
    assert "1 updated" in result.stderr and "0 deleted" in result.stderr, result.stderr
    assert stats(index)["documents"] == 5  # delta and echo are kept as they were
    assert not corpus_changed(Settings(corpus=corpus, index=index))  # `ask` does not re-ingest every time


def test_empty_corpus_is_an_error_and_makes_no_index(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = qabot("ingest", "--corpus", str(empty), "--index", str(tmp_path / "index"))
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith(f"Error: no indexable documents in {empty} (0 skipped)")
    assert not (tmp_path / "index" / "manifest.sqlite3").exists()

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "blob.txt").write_bytes(bytes(range(256)) * 20)
    (bad / "empty.md").write_bytes(b"")
    result = qabot("ingest", "--corpus", str(bad), "--index", str(tmp_path / "index2"))
    assert result.exit_code == 2
    assert f"Error: no indexable documents in {bad} (2 skipped)" in result.stderr, result.stderr
    assert len([l for l in result.stderr.splitlines() if l.startswith("skipped ")]) == 2

    asked = qabot("ask", "--corpus", str(empty), "--index", str(tmp_path / "index3"), QUESTION)
    assert asked.exit_code == 2 and f"no indexable documents in {empty}" in asked.stderr, asked.stderr


def test_rebuild_from_an_empty_corpus_keeps_the_index(tmp_path):
    corpus, index = build(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = qabot("ingest", "--rebuild", "--corpus", str(empty), "--index", str(index))
    assert result.exit_code == 2 and "no indexable documents" in result.stderr, result.stderr
    assert stats(index)["documents"] == 3


# --- 10. progress -----------------------------------------------------------------------------------


def test_progress_moves_per_batch_with_an_exact_total(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 36, paragraphs=4)
    settings = Settings(corpus=corpus, index=tmp_path / "index", chunk_size=200, chunk_overlap=0)
    calls, reading = [], []
    report = ingest(settings, embedder=embedder, on_progress=lambda done, total: calls.append((done, total)),
                    on_reading=lambda done, total: reading.append((done, total)))
    total = report.chunks_embedded
    assert total > 300
    assert reading[-1] == (36, 36) and len(reading) == 36
    assert {t for _, t in calls} == {total}, "the total is exact from the first update"
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total
    # The engines embed in batches of at most 128 texts (MAX_BATCH): it moves after each, not
    # only after each group of EMBED_GROUP chunks.
    batches = -(-total // MAX_BATCH)
    assert batches > -(-total // EMBED_GROUP)
    assert len(set(done)) >= 1 + batches, sorted(set(done))


# --- 7. Ctrl-C during an ingest ------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_ingest_keeps_what_was_written_and_says_so(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 160, paragraphs=6)
    settings = Settings(corpus=corpus, index=tmp_path / "index", chunk_size=200, chunk_overlap=0)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "ingest", "--corpus", str(corpus),
                             "--index", str(settings.index), "--chunk-size", "200", "--chunk-overlap", "0"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        hit = wait_for(lambda: sum(s == "done" for s in manifest_states(settings).values()) >= 10, proc, 300, 0.05)
        assert hit, proc.communicate(timeout=60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted (the next ingest resumes).", err
    assert "Aborted!" not in err and "Traceback" not in err
    kept = sum(s == "done" for s in manifest_states(settings).values())
    assert 10 <= kept < 160, kept

    report = ingest(settings)
    assert report.unchanged >= kept and report.added + report.unchanged == 160
    check_index(settings)
