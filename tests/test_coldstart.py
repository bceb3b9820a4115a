"""A cold `qabot ask` (issue #18, item 3): an embedded index whose BM25 cache is valid for its
generation answers without opening Chroma, or even importing chromadb (~0.8 s of a cold
start); a stale cache still falls back to Chroma and is rebuilt; a damaged or missing Chroma
database is still the one-line error it was; the definitions index is cached with BM25.

Each `qabot ask` runs in a new process, as a user's would, and reports whether chromadb was
imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.config import Settings
from bot.ingest.pipeline import ingest
from bot.qa.definitions import Definitions
from bot.qa.retrieve import DEFINITIONS_FILE, BM25Index
from bot.schema import Chunk
from test_crash import REPO, subprocess_env

# Runs `qabot ask ...` (the installed entry point's main) and says on its last stderr line
# whether chromadb was imported by the time the process ended.
ASK = """
import atexit, sys
atexit.register(lambda: print("chromadb imported:", "chromadb" in sys.modules, file=sys.stderr))
sys.argv = ["qabot", "ask", *sys.argv[1:]]
from bot.cli.main import main
main()
"""

CRANE = ("The harbour crane Goliath lifts 80 tonnes and is serviced every 6 weeks by the dock crew. "
         "It was built in 1971 and repainted blue in 2003.\n")
API = (".. function:: frobnicate(value, times=3)\n\n"
       "   Return *value* frobnicated *times* times; the default is three times.\n")


def ask(settings: Settings, question: str, corpus: Path | None = None) -> tuple[dict, bool, str]:
    """`qabot ask --json` in a new process: its answer (without timings; {} when it failed),
    whether it imported chromadb, and its stderr."""
    done = subprocess.run([sys.executable, "-c", ASK, question, "--json", "--corpus", str(corpus or settings.corpus),
                           "--index", str(settings.index)], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("chromadb imported:"), done.stderr
    if done.returncode != 0:
        return {}, last.endswith("True"), done.stderr
    answer = json.loads(done.stdout)
    answer.pop("timings_ms")
    return answer, last.endswith("True"), done.stderr


def build(tmp_path: Path, embedder) -> Settings:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "crane.txt").write_text(CRANE * 3)
    (corpus / "api.rst").write_text(API)
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    ingest(settings, embedder=embedder)
    return settings


def test_a_valid_cache_answers_without_chromadb_and_a_stale_one_falls_back_to_chroma(tmp_path, embedder):
    settings = build(tmp_path, embedder)
    question = "how many tonnes does Goliath lift"

    first, imported, _ = ask(settings, question)  # no cache yet: built from Chroma
    assert imported and "80 tonnes" in first["answer"], first
    assert (settings.index / "bm25" / "vectors.npy").exists()

    again, imported, _ = ask(settings, question)  # the cache of this generation answers alone
    assert not imported
    assert again == first

    # A new generation (an ingest in between): the cache is stale, Chroma is opened and the
    # cache rebuilt, with what the ingest added.
    (settings.corpus / "tug.txt").write_text("The tug Hercules pulls 45 tonnes out of the harbour every morning.\n")
    ingest(settings, embedder=embedder)
    stale, imported, _ = ask(settings, "how many tonnes does Hercules pull")
    assert imported and "45 tonnes" in stale["answer"], stale
    fresh, imported, _ = ask(settings, "how many tonnes does Hercules pull")
    assert not imported and fresh == stale


def test_the_definitions_index_is_cached_with_bm25(tmp_path, embedder):
    settings = build(tmp_path, embedder)
    question = "how many times does frobnicate() frobnicate by default"
    first, _, _ = ask(settings, question)
    assert any(c["source"] == "api.rst" for c in first["citations"]), first
    saved = json.loads((settings.index / "bm25" / DEFINITIONS_FILE).read_text())
    assert "frobnicate" in saved["by_name"]
    again, imported, _ = ask(settings, question)  # read back, not built
    assert not imported and again == first


def test_a_damaged_or_missing_chroma_database_is_said_even_with_a_valid_cache(tmp_path, embedder):
    settings = build(tmp_path, embedder)
    question = "how many tonnes does Goliath lift"
    assert ask(settings, question)[0]  # the cache is written
    database = settings.index / "chroma" / "chroma.sqlite3"

    database.write_bytes(os.urandom(5000))  # not a database: its count cannot be read, Chroma says why
    answer, _, stderr = ask(settings, question)
    assert not answer
    assert f"Error: {database} is damaged (" in stderr and "Traceback" not in stderr, stderr

    # Deleted: an error from another folder than the index's corpus, which cannot embed again...
    database.unlink()
    other = tmp_path / "other"
    other.mkdir()
    answer, _, stderr = ask(settings, question, corpus=other)
    assert not answer
    assert "Error: the vector store holds none of the index's" in stderr and "chroma.sqlite3 is missing" in stderr, \
        stderr
    # ... and from its own corpus, embedded again first, never answered from the cache alone.
    answer, imported, stderr = ask(settings, question)
    assert imported and "embedding them again" in stderr and "80 tonnes" in answer["answer"], (answer, stderr)


def test_cached_definitions_are_used_only_for_their_own_generation_and_chunks(tmp_path):
    chunks = [Chunk(f"c{i}", f".. function:: name{i}(x)\n\n   Does thing {i}.\n", "api.rst", "API") for i in range(4)]
    index = BM25Index(chunks)
    index.save(tmp_path / "bm25", 7)
    saved = json.loads((tmp_path / "bm25" / DEFINITIONS_FILE).read_text())
    assert saved["generation"] == 7 and saved["by_name"]["name2"] == ["c2"]

    loaded = BM25Index.load(tmp_path / "bm25", 7)
    assert loaded.definitions().to_json() == Definitions(chunks).to_json()
    assert loaded.definitions().by_name["name1"][0] is loaded.chunks[1]

    # Definitions written for another generation (a folder replaced under a reader) are rebuilt.
    stale = dict(saved, generation=6, by_name={"name0": ["c3"]})
    (tmp_path / "bm25" / DEFINITIONS_FILE).write_text(json.dumps(stale))
    again = BM25Index.load(tmp_path / "bm25", 7)
    assert again.definitions().by_name["name0"] == [again.chunks[0]]
    assert json.loads((tmp_path / "bm25" / DEFINITIONS_FILE).read_text())["generation"] == 7  # and rewritten
    # An id that is not among the chunks: rebuilt too.
    (tmp_path / "bm25" / DEFINITIONS_FILE).write_text(json.dumps(dict(saved, by_name={"name0": ["gone"]})))
    assert BM25Index.load(tmp_path / "bm25", 7).definitions().by_name["name0"][0].id == "c0"
