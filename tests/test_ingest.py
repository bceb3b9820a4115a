"""Ingest through the real CLI: incremental behaviour, bad input, crash repair."""
import json
import re

import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.config import Settings
from bot.ingest.manifest import open_manifest
from bot.ingest.pipeline import ingest
from bot.ingest.report import IngestReport
from bot.store.chroma import VectorStore
from conftest import write_pdf

SUMMARY = re.compile(r"(\d+) added, (\d+) updated, (\d+) unchanged, (\d+) deleted, (\d+) skipped.*?"
                     r"(\d+) chunks? embedded, (\d+) in index")


class CountingEmbedder:
    """The session's embedder, counting the texts of each `embed` call."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.precision = inner.precision
        self.settings = inner.settings
        self.calls: list[int] = []

    def embed(self, texts, show_progress=False):
        self.calls.append(len(texts))
        return self.inner.embed(texts, show_progress)


@pytest.fixture
def counting(embedder):
    """An embedder to hand `ingest()` that counts texts embedded, sharing the one loaded model."""
    return CountingEmbedder(embedder)


def run(args, tmp_path):
    result = CliRunner().invoke(cli, args + ["--index", str(tmp_path / "index")], catch_exceptions=False)
    return result


def summary(result):
    """The numbers of `qabot ingest`'s summary line (a CLI result), or of an IngestReport's."""
    text = result.summary_line() if isinstance(result, IngestReport) else result.stderr
    match = SUMMARY.search(text)
    assert match, text
    keys = ("added", "updated", "unchanged", "deleted", "skipped", "embedded", "total")
    return dict(zip(keys, map(int, match.groups())))


def make_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("Alpha is the first letter. " * 60)
    (corpus / "b.md").write_text("# Bravo\n\n" + "Bravo is the second letter. " * 60)
    (corpus / "sub" / "c.html").write_text("<h1>Charlie</h1><p>" + "Charlie is third. " * 80 + "</p>")
    (corpus / "notes.csv").write_text("not,indexed\n")  # unsupported: ignored silently
    return corpus


def test_second_run_embeds_nothing(tmp_path, counting):
    corpus = make_corpus(tmp_path)
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    first = summary(ingest(settings, embedder=counting))
    assert first["added"] == 3 and first["embedded"] == first["total"] > 3
    assert sum(counting.calls) == first["embedded"]  # the count sees what is embedded
    counting.calls.clear()
    second = run(["ingest", "--corpus", str(corpus)], tmp_path)  # the command: same numbers
    assert second.exit_code == 0
    third = ingest(settings, embedder=counting)
    for s in (summary(second), summary(third)):
        assert s == {"added": 0, "updated": 0, "unchanged": 3, "deleted": 0, "skipped": 0,
                     "embedded": 0, "total": first["total"]}
    assert counting.calls == []


def test_touched_but_identical_file_is_not_reembedded(tmp_path, counting):
    corpus = make_corpus(tmp_path)
    run(["ingest", "--corpus", str(corpus)], tmp_path)
    (corpus / "a.txt").write_text((corpus / "a.txt").read_text())  # new mtime, same content
    s = summary(ingest(Settings(corpus=corpus, index=tmp_path / "index"), embedder=counting))
    assert s["unchanged"] == 3 and s["embedded"] == 0 and counting.calls == []


def test_edit_and_delete_update_chunk_counts(tmp_path, embedder):
    corpus = make_corpus(tmp_path)
    first = summary(run(["ingest", "--corpus", str(corpus), "--chunk-size", "300"], tmp_path))
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    per_source = _chunks_per_source(settings)
    assert set(per_source) == {"a.txt", "b.md", "sub/c.html"}

    (corpus / "a.txt").write_text("Alpha is short now.")
    (corpus / "b.md").unlink()
    s = summary(run(["ingest", "--corpus", str(corpus), "--chunk-size", "300"], tmp_path))
    assert (s["added"], s["updated"], s["unchanged"], s["deleted"]) == (0, 1, 1, 1)
    after = _chunks_per_source(settings)
    assert after == {"a.txt": 1, "sub/c.html": per_source["sub/c.html"]}
    assert s["total"] == first["total"] - per_source["a.txt"] + 1 - per_source["b.md"]
    texts = [c.text for c in VectorStore(settings).all_chunks()]
    assert "Alpha is short now." in texts and not any("Bravo" in t for t in texts)


def _chunks_per_source(settings):
    counts = {}
    for chunk in VectorStore(settings).all_chunks(include_text=False):
        counts[chunk.source] = counts.get(chunk.source, 0) + 1
    return counts


def test_bad_files_are_skipped_with_one_line_each_and_the_rest_indexed(tmp_path):
    corpus = make_corpus(tmp_path)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\n%%EOF garbage that is no PDF")
    (corpus / "blob.txt").write_bytes(bytes(range(256)) * 40)
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "latin.txt").write_bytes("r\xe9sum\xe9 na\xefve".encode("latin-1"))
    write_pdf(corpus / "good.pdf", ["Delta is on page one. " * 40, "Echo is on page two. " * 40])
    result = run(["ingest", "--corpus", str(corpus)], tmp_path)
    assert result.exit_code == 0
    s = summary(result)
    assert s["added"] == 4 and s["skipped"] == 4
    lines = [l for l in result.stderr.splitlines() if l.startswith("skipped")]
    assert len(lines) == 4
    assert any("broken.pdf" in l and "broken PDF" in l for l in lines)
    assert any("blob.txt" in l and "binary" in l for l in lines)
    assert any("empty.md" in l and "empty" in l for l in lines)
    assert any("latin.txt" in l and "UTF-8" in l for l in lines)
    assert "Traceback" not in result.output
    pages = {c.page for c in VectorStore(Settings(corpus=corpus, index=tmp_path / "index")).all_chunks()
             if c.source == "good.pdf"}
    assert pages == {1, 2}


def test_missing_corpus_is_a_one_line_error_with_exit_2(tmp_path):
    result = run(["ingest", "--corpus", str(tmp_path / "nope")], tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "corpus path not found" in result.stderr


def test_stats_reports_documents_chunks_and_model(tmp_path):
    corpus = make_corpus(tmp_path)
    run(["ingest", "--corpus", str(corpus)], tmp_path)
    result = run(["stats", "--json"], tmp_path)
    info = json.loads(result.output)
    assert info["documents"] == 3 and info["chunks"] > 3
    assert info["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["index_bytes"] > 0
    human = run(["stats"], tmp_path).output
    assert "Documents" in human and "all-MiniLM-L6-v2" in human


def test_stats_without_index_is_a_clear_error(tmp_path):
    result = run(["stats"], tmp_path)
    assert result.exit_code == 2 and "qabot ingest" in result.stderr


def test_env_variables_set_locations(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path)
    monkeypatch.setenv("QABOT_CORPUS", str(corpus))
    monkeypatch.setenv("QABOT_INDEX", str(tmp_path / "envindex"))
    result = CliRunner().invoke(cli, ["ingest"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "envindex" / "manifest.sqlite3").exists()


def test_rebuild_reembeds_everything(tmp_path):
    corpus = make_corpus(tmp_path)
    first = summary(run(["ingest", "--corpus", str(corpus)], tmp_path))
    again = summary(run(["ingest", "--corpus", str(corpus), "--rebuild"], tmp_path))
    assert again["added"] == 3 and again["embedded"] == again["total"] == first["total"]


def test_interrupted_run_is_repaired(tmp_path, embedder):
    """A crash between marking a file pending and finishing leaves a state the next run fixes."""
    corpus = make_corpus(tmp_path)
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    first = ingest(settings, embedder=embedder)
    store = VectorStore(settings)
    # Simulate: a.txt was being rewritten (pending) and half its chunks are gone; plus a stray
    # chunk from a file the manifest never recorded.
    manifest = open_manifest(settings)
    manifest.set_state("a.txt", "pending")
    manifest.close()
    a_ids = [c.id for c in store.all_chunks() if c.source == "a.txt"]
    store.delete_ids(a_ids[: len(a_ids) // 2])
    store.collection.upsert(ids=["ffff-00000"], embeddings=[[0.1] * 384], documents=["stray"],
                            metadatas=[{"source": "gone.txt", "title": "x", "start": 0, "end": 5}])
    report = ingest(settings, embedder=embedder)
    assert report.repaired >= 1
    assert store.count() == first.chunks_total
    ids = [c.id for c in store.all_chunks(include_text=False)]
    assert len(ids) == len(set(ids)) and "ffff-00000" not in ids
    manifest = open_manifest(settings)
    assert all(r["state"] == "done" for r in manifest.files().values())
    assert manifest.expected_chunks() == store.count()
    manifest.close()


def test_ask_side_ingest_keeps_the_index_chunking(tmp_path, counting):
    """An index built with --chunk-size 300 is not re-chunked by a later ingest without the flag
    (which is what `ask` runs when the corpus changed)."""
    corpus = make_corpus(tmp_path)
    first = summary(run(["ingest", "--corpus", str(corpus), "--chunk-size", "300"], tmp_path))
    again = summary(ingest(Settings(corpus=corpus, index=tmp_path / "index"), embedder=counting))
    assert again["embedded"] == 0 and again["total"] == first["total"] and counting.calls == []
    (corpus / "new.txt").write_text("Foxtrot is the sixth letter. " * 40)
    added = summary(run(["ingest", "--corpus", str(corpus)], tmp_path))
    assert added["added"] == 1
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    assert all(len(c.text) <= 300 for c in VectorStore(settings).all_chunks())


def test_unchanged_reingest_takes_the_stat_only_path(tmp_path):
    corpus = make_corpus(tmp_path)
    run(["ingest", "--corpus", str(corpus)], tmp_path)

    def no_chroma(settings):
        raise AssertionError("Chroma opened for an unchanged corpus")

    settings = Settings(corpus=corpus, index=tmp_path / "index")
    s = summary(ingest(settings, open_store=no_chroma))
    assert s["unchanged"] == 3 and s["embedded"] == 0
    (corpus / "a.txt").write_text("Alpha changed.")  # ...and a changed corpus does open it
    with pytest.raises(AssertionError, match="Chroma opened"):
        ingest(settings, open_store=no_chroma)


def test_summary_line_counts_in_words():
    from bot.ingest.report import IngestReport

    one = IngestReport(added=1, chunks_embedded=1, chunks_total=1).summary_line()
    assert "1 file indexed" in one and "1 chunk embedded, 1 in index" in one
    assert "2 chunks embedded" in IngestReport(added=2, chunks_embedded=2, chunks_total=2).summary_line()


def test_corpus_reached_through_a_symlinked_folder_keeps_relative_names(tmp_path):
    """Sources are named relative to the corpus as given, also when that path runs through a
    symlink (a shared folder linked in): citations say `notes.txt`, not an absolute path."""
    from bot.ingest.discover import discover

    real = tmp_path / "real" / "corpus"
    real.mkdir(parents=True)
    (real / "notes.txt").write_text("Some notes about the harbour.")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    files = discover([tmp_path / "link" / "corpus"], tmp_path / "link" / "corpus", lambda s, r: None)
    assert [f.source for f in files] == ["notes.txt"]
