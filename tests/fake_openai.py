"""A fake OpenAI-compatible chat server on 127.0.0.1, for testing the real ChatOpenAI client.

    with FakeOpenAI() as server:
        server.script(text="Russia will leave after 2024 [1].")  # or status=500, delay=5
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        ...
        server.requests[-1]["messages"]  # what the client sent

Serves `POST /v1/chat/completions`, streaming (SSE `data:` chunks then `data: [DONE]`) when
the request says `"stream": true`, a JSON completion otherwise, and `GET /v1/models` (the names
in `server.models`; none listed by default). The server runs its own event loop in a daemon
thread, so synchronous tests can use it directly.

Replaying a real model's recorded replies (tests/llm_transcripts/, see tests/tools/record_llm.py):

    server.replay(load_transcript(path))  # each request answered with the reply recorded for
                                          # its question and passages; HTTP 404 when none was

`server.abandoned` counts streamed replies whose client went away before the end: what a real
server notices to stop generating.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web


@dataclass
class Script:
    """How the server answers the next requests (until the next `script()` call)."""

    text: str = ""
    status: int = 200  # non-200: an OpenAI-style error body with this status
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between streamed chunks
    raw: str | None = None  # a body sent as-is with status 200 (malformed output)


def transcript_key(question: str, passages: str) -> str:
    """What a recorded reply is filed under: the question and the passages exactly as the prompt
    held them (so a change of retrieval, chunking or excerpting makes a replay miss, not lie)."""
    return hashlib.sha256(f"{question}\n{passages}".encode()).hexdigest()[:16]


def prompt_key(body: dict) -> str | None:
    """The transcript key of a chat request, read from its last user message."""
    prompt = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
    passages = re.search(r"<passages>\n(.*)\n</passages>", prompt, re.DOTALL)
    question = re.search(r"^Question: (.*)$", prompt, re.MULTILINE)
    return transcript_key(question.group(1), passages.group(1)) if passages and question else None


def load_transcript(path: Path) -> tuple[dict, dict[str, str]]:
    """(the header, {key: reply}) of a recorded transcript (JSON Lines, header first)."""
    header, replies = {}, {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        if n == 0:
            header = record
        else:
            replies[record["key"]] = record["reply"]
    return header, replies


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # JSON bodies received, in order
        self.models: list[str] = []  # what GET /v1/models lists
        self.abandoned = 0  # streamed replies whose client went away before the end
        self.replayed = self.missed = 0  # replay mode: requests answered from the transcript, and not
        self._replies: dict[str, str] | None = None
        self._script = Script()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, text: str = "", **kwargs) -> None:
        self._script = Script(text=text, **kwargs)
        self._replies = None

    def replay(self, transcript: tuple[dict, dict[str, str]] | dict[str, str]) -> None:
        """Answer each request with the reply recorded for its prompt (`load_transcript`)."""
        self._replies = transcript[1] if isinstance(transcript, tuple) else transcript
        self.replayed = self.missed = 0

    def start(self) -> FakeOpenAI:
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-openai")
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._closing.set()  # wakes delayed handlers
        await self._runner.cleanup()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server is closing; False if it is."""
        if seconds <= 0:
            return True
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
            return False
        except asyncio.TimeoutError:
            return True

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "owned_by": "fake"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        script = self._script
        if self._replies is not None:
            reply = self._replies.get(prompt_key(body) or "")
            if reply is None:
                self.missed += 1
                error = {"error": {"message": "no recorded reply for this prompt", "type": "not_found", "code": None}}
                return web.json_response(error, status=404)
            self.replayed += 1
            script = Script(text=reply)
        if not await self._sleep(script.delay):
            return web.Response(status=503)
        if script.status != 200:
            error = {"error": {"message": "scripted failure", "type": "server_error", "code": None}}
            return web.json_response(error, status=script.status)
        if script.raw is not None:
            return web.Response(text=script.raw, content_type="application/json")
        model = body.get("model", "fake")
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": script.text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }
            )

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict, finish: str | None = None, **extra) -> None:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        try:
            await send({"role": "assistant", "content": ""})
            for piece in re.findall(r"\S+\s*|\s+", script.text):
                if not await self._sleep(script.chunk_delay):
                    return response
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client went away")
                await send({"content": piece})
        except ConnectionResetError:  # the client closed the stream: stop "generating"
            self.abandoned += 1
            return response
        except asyncio.CancelledError:  # aiohttp cancels the handler of a closed connection
            self.abandoned += 1
            raise
        await send({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [], "usage": usage}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
