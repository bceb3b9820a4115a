"""Server mode: the same ingest/stats/answer behaviour through a real Chroma server.

The fixture starts `chroma run` (the server that ships with the chromadb package) on a free
loopback port, waits for its heartbeat and stops it at the end.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.config import Settings
from bot.qa.pipeline import QA
from bot.store.chroma import VectorStore
from test_crash import check_index

CHROMA = Path(sys.executable).parent / "chroma"
SUMMARY = re.compile(r"(\d+) added, (\d+) updated, (\d+) unchanged, (\d+) deleted, (\d+) skipped.*?"
                     r"(\d+) chunks? embedded, (\d+) in index")

pytestmark = pytest.mark.skipif(not CHROMA.exists(), reason="the chroma server CLI is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test process dies without its teardown (killed)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ChromaServer:
    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path, self.port = path, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = path.parent / f"chroma-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ChromaServer":
        self.proc = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("chroma server did not answer its heartbeat within 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path):
    srv = ChromaServer(tmp_path / "chroma-data").start()
    yield srv
    srv.stop()


def run(args, index: Path):
    return CliRunner().invoke(cli, args + ["--index", str(index)], catch_exceptions=False)


def summary(result):
    match = SUMMARY.search(result.stderr)
    assert match, result.stderr
    keys = ("added", "updated", "unchanged", "deleted", "skipped", "embedded", "total")
    return dict(zip(keys, map(int, match.groups())))


def test_ingest_stats_and_answer_through_a_chroma_server(server, iss_corpus, tmp_path, embedder, monkeypatch):
    (iss_corpus / "extra.md").write_text("# Gateway\n\n" + "The lunar Gateway is a planned station. " * 40)
    index = tmp_path / "index"
    monkeypatch.setenv("QABOT_CHROMA_URL", server.url)  # the environment variable works like the flag
    first = run(["ingest", "--corpus", str(iss_corpus)], index)
    assert first.exit_code == 0, first.stderr
    s1 = summary(first)
    assert s1["added"] == 2 and s1["embedded"] == s1["total"] > 2

    second = summary(run(["ingest", "--corpus", str(iss_corpus)], index))  # incremental
    assert second == {"added": 0, "updated": 0, "unchanged": 2, "deleted": 0, "skipped": 0,
                      "embedded": 0, "total": s1["total"]}
    # Nothing of the collection is stored locally, not even its manifest: that is on the server,
    # so another machine (another --index folder) sees the same index and its state.
    assert not (index / "chroma").exists() and not list(index.glob("manifest*.sqlite3"))
    elsewhere = run(["ingest", "--corpus", str(iss_corpus)], tmp_path / "other-machine")
    assert summary(elsewhere)["unchanged"] == 2 and summary(elsewhere)["embedded"] == 0

    info = json.loads(run(["stats", "--json"], index).output)
    assert info["documents"] == 2 and info["chunks"] == s1["total"]
    assert info["chroma_url"] == server.url and info["index_bytes"] is None
    assert info["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"

    # Edits and deletions reach the server too.
    (iss_corpus / "extra.md").unlink()
    s3 = summary(run(["ingest", "--corpus", str(iss_corpus)], index))
    assert s3["deleted"] == 1 and s3["embedded"] == 0
    settings = Settings(corpus=iss_corpus, index=index, chroma_url=server.url)
    check_index(settings)

    answer = QA(settings, embedder=embedder).answer("when will Russia leave the ISS?")
    assert "2024" in answer.text, answer.text
    assert any(c.source == "russia-iss-withdrawal.txt" for c in answer.citations)


@pytest.mark.slow
def test_ask_through_a_chroma_server(server, iss_corpus, tmp_path, monkeypatch):
    index = tmp_path / "index"
    monkeypatch.setenv("QABOT_CHROMA_URL", server.url)
    assert run(["ingest", "--corpus", str(iss_corpus)], index).exit_code == 0
    result = run(["ask", "--corpus", str(iss_corpus), "when will Russia leave the ISS?"], index)
    assert result.exit_code == 0, result.stderr
    assert "2024" in result.output


@pytest.mark.slow
def test_server_that_lost_its_data_is_repaired_by_the_next_ingest(tmp_path, iss_corpus, embedder):
    """The manifest and the chunks are both on the server: if the server comes back empty (new
    volume, wiped), the next ingest embeds everything again instead of trusting anything local."""
    first = ChromaServer(tmp_path / "data-1").start()
    try:
        settings = Settings(corpus=iss_corpus, index=tmp_path / "index", chroma_url=first.url)
        from bot.ingest.pipeline import ingest

        total = ingest(settings, embedder=embedder).chunks_total
    finally:
        first.stop()
    wiped = ChromaServer(tmp_path / "data-2", port=first.port).start()
    try:
        report = ingest(settings, embedder=embedder)
        assert report.added == report.documents >= 1 and report.chunks_embedded == total == report.chunks_total
        check_index(settings)
    finally:
        wiped.stop()


def test_unreachable_or_lost_server_is_a_one_line_error(tmp_path, iss_corpus):
    index = tmp_path / "index"
    for url in (f"http://127.0.0.1:{free_port()}", "not-a-url", "ftp://example.org"):
        result = run(["ingest", "--corpus", str(iss_corpus), "--chroma-url", url], index)
        assert result.exit_code == 2, (url, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "Chroma server" in lines[0]


@pytest.mark.slow
def test_server_going_away_mid_run_is_a_one_line_error(server, tmp_path, iss_corpus, embedder, monkeypatch):
    from bot.errors import IndexProblem
    from bot.ingest.pipeline import ingest

    settings = Settings(corpus=iss_corpus, index=tmp_path / "index", chroma_url=server.url)
    original = VectorStore.upsert

    def upsert_after_server_died(self, chunks, vectors):
        server.stop()
        return original(self, chunks, vectors)

    monkeypatch.setattr(VectorStore, "upsert", upsert_after_server_died)
    with pytest.raises(IndexProblem, match="lost the connection to the Chroma server"):
        ingest(settings, embedder=embedder)
    monkeypatch.setattr(VectorStore, "upsert", original)
    server.start()  # same data path: the half-done run is repaired
    ingest(settings, embedder=embedder)
    check_index(settings)


class TokenProxy:
    """A reverse proxy on loopback that lets a request through to the Chroma server only with
    `Authorization: Bearer <token>` (as a proxy or Chroma's own token auth would)."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream, self.token, self.port = upstream, token, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.refused = 0

    async def _handle(self, request):
        from aiohttp import ClientSession, web

        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            return web.json_response({"error": "Unauthorized", "message": "missing or bad token"}, status=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")}
        async with ClientSession() as session:
            async with session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                       data=await request.read()) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)

    def __enter__(self) -> "TokenProxy":
        import asyncio
        import threading

        from aiohttp import web

        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve():
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            started.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        assert started.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_server_behind_a_token(server, iss_corpus, tmp_path, monkeypatch):
    with TokenProxy(server.url, "s3cret") as proxy:
        index = tmp_path / "index"
        # Without the token: one line that says what to set, no traceback.
        refused = run(["ingest", "--corpus", str(iss_corpus), "--chroma-url", proxy.url], index)
        assert refused.exit_code != 0 and proxy.refused
        assert "QABOT_CHROMA_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1

        monkeypatch.setenv("QABOT_CHROMA_TOKEN", "s3cret")
        ok = run(["ingest", "--corpus", str(iss_corpus), "--chroma-url", proxy.url], index)
        assert ok.exit_code == 0, ok.stderr
        assert summary(ok)["total"] > 0
        answer = run(["ask", "--json", "--corpus", str(iss_corpus), "--chroma-url", proxy.url,
                      "when will Russia leave the ISS?"], index)
        assert answer.exit_code == 0 and "2024" in json.loads(answer.stdout)["answer"]
        assert "s3cret" not in ok.stderr + answer.stderr + answer.stdout


def test_bm25_on_a_server_is_cached_and_updated_by_the_changed_files_only(server, iss_corpus, tmp_path, embedder,
                                                                         monkeypatch):
    """Start-up in server mode loads the BM25 cache instead of fetching every text; after an
    ingest it fetches only the chunks of the files whose hash changed."""
    from bot.ingest.pipeline import ingest

    (iss_corpus / "gateway.md").write_text("# Gateway\n\n" + "The lunar Gateway is a planned station. " * 40)
    settings = Settings(corpus=iss_corpus, index=tmp_path / "index", chroma_url=server.url)
    total = ingest(settings, embedder=embedder).chunks_total
    first = QA(settings, embedder=embedder)  # no cache yet: every chunk, once
    assert len(first.retriever.bm25.chunks) == total
    assert list((tmp_path / "index").glob("bm25-*/sources.json"))

    fetched: list[list[str]] = []
    original_chunks_of = VectorStore.chunks_of

    def every_chunk(self, include_text=True):
        raise AssertionError("fetched every chunk of the collection")

    def chunks_of(self, sources):
        fetched.append(sources)
        return original_chunks_of(self, sources)

    monkeypatch.setattr(VectorStore, "all_chunks", every_chunk)
    monkeypatch.setattr(VectorStore, "chunks_of", chunks_of)
    again = QA(settings, embedder=embedder)  # same generation: the cache as it is
    assert len(again.retriever.bm25.chunks) == total and not fetched

    (iss_corpus / "gateway.md").write_text("# Gateway\n\nThe Gateway's Xenonthruster module is new. " * 3)
    ingest(settings, embedder=embedder)
    assert again.refresh()
    assert fetched == [["gateway.md"]]
    hits = again.retriever.bm25.search("xenonthruster", 3)
    assert hits and hits[0][0].source == "gateway.md"
    assert len(again.retriever.bm25.chunks) == VectorStore(settings).count()
