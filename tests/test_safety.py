"""Nothing lost (issue #16, item 2): a damaged index is one line and `--rebuild` always starts over."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.store.chroma import forget_embedded

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
