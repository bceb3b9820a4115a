"""A fake OpenAI-compatible chat server on 127.0.0.1, for testing the real ChatOpenAI client.

    with FakeOpenAI() as server:
        server.script(text="Russia will leave after 2024 [1].")  # or status=500, delay=5
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        ...
        server.requests[-1]["messages"]  # what the client sent

Serves `POST /v1/chat/completions`, streaming (SSE `data:` chunks then `data: [DONE]`) when
the request says `"stream": true`, a JSON completion otherwise. The server runs its own event
loop in a daemon thread, so synchronous tests can use it directly.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Script:
    """How the server answers the next requests (until the next `script()` call)."""

    text: str = ""
    status: int = 200  # non-200: an OpenAI-style error body with this status
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between streamed chunks
    raw: str | None = None  # a body sent as-is with status 200 (malformed output)


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # JSON bodies received, in order
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

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        script = self._script
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

        await send({"role": "assistant", "content": ""})
        for piece in re.findall(r"\S+\s*|\s+", script.text):
            if not await self._sleep(script.chunk_delay):
                return response
            await send({"content": piece})
        await send({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [], "usage": usage}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
