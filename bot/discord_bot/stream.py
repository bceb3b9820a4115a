"""Answers that appear as they are written: one message, created at the first words and edited
in place at a rate Discord allows, then replaced by the verified answer.

The stream (`QA.stream` behind the bot's `stream_fn`) is a blocking generator: it runs in a
worker thread and hands its items to the event loop through an `asyncio.Queue`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable

import discord

from bot.discord_bot.render import CONTENT_MAX
from bot.schema import Answer
from bot.threads import END, Worker

log = logging.getLogger(__name__)

EDIT_INTERVAL = 1.2  # seconds between two writes (create or edit) of the same message
NO_MENTIONS = discord.AllowedMentions.none()


def preview(text: str) -> str:
    """The live text as message content: at most CONTENT_MAX characters, cut with "…"."""
    text = text.strip()
    if len(text) <= CONTENT_MAX:
        return text
    return text[: CONTENT_MAX - 1].rstrip() + "…"


class ThreadedStream:
    """Runs a blocking iterator in a worker thread (bot.threads.Worker); `get` awaits its next
    item on the event loop."""

    def __init__(self, make: Callable[[], Iterable[Any]]):
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._worker = Worker(make, self._put, name="qabot-stream")

    def _put(self, item: Any, error: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._worker.close()

    async def get(self, timeout: float | None = None) -> Any:
        """The next item; raises the iterator's exception, StopAsyncIteration at its end,
        TimeoutError if nothing arrives within `timeout` seconds (no item is lost)."""
        item, error = await asyncio.wait_for(self._queue.get(), timeout)
        if item is END:
            self._queue.put_nowait((item, error))  # later calls see the end again
            if error is not None:
                raise error
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Ask the worker to stop at its next item (it cannot be interrupted mid-call)."""
        self._worker.close()


class LiveMessage:
    """One message that shows a reply while it is written.

    `create(text)` posts the message (a channel message or an interaction follow-up) when the
    first words arrive; later text is shown by editing it, at most once per `interval` seconds,
    never with more than CONTENT_MAX characters. `finish(...)` makes the last edit: the verified
    answer (or an error) replaces the unverified text.
    """

    def __init__(
        self, create: Callable[[str], Awaitable[discord.Message]], interval: float = EDIT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.create = create
        self.interval = interval
        self.clock = clock
        self.message: discord.Message | None = None
        self.shown = ""  # the content the message has now
        self._written = float("-inf")  # when the message was last created or edited
        self._failed = False  # an edit failed (e.g. the message was deleted): stop editing

    async def stream(self, stream_fn: Callable[..., Iterable[str | Answer]], *args) -> Answer:
        """Consume `stream_fn(*args)` in a worker thread, showing its text as it grows; returns
        the final `Answer` it yields."""
        items = ThreadedStream(lambda: stream_fn(*args))
        text = ""
        try:
            while True:
                due = self.message is not None and not self._failed and preview(text) != self.shown
                wait = max(0.0, self._written + self.interval - self.clock()) if due else None
                try:
                    item = await items.get(wait)
                except asyncio.TimeoutError:
                    if self.clock() - self._written >= self.interval:  # timers may fire a hair early
                        await self._edit(content=preview(text), allowed_mentions=NO_MENTIONS)
                    continue
                except StopAsyncIteration:
                    raise RuntimeError("the answer stream ended without an answer") from None
                if isinstance(item, Answer):
                    return item
                if not isinstance(item, str):
                    continue
                text += item
                if self.message is None and text.strip():
                    await self._create(preview(text))
        finally:
            items.close()

    async def finish(self, **fields) -> bool:
        """Replace the message's content with `fields` (as for `Message.edit`), waiting for its
        turn. False if there is no message to edit (or it cannot be edited): send one instead."""
        if self.message is None or self._failed:
            return False
        while (left := self._written + self.interval - self.clock()) > 0:
            await asyncio.sleep(left)
        return await self._edit(**fields)

    async def _create(self, content: str) -> None:
        self.message = await self.create(content)
        self.shown, self._written = content, self.clock()

    async def _edit(self, **fields) -> bool:
        try:
            edited = await self.message.edit(**fields)
        except discord.HTTPException as e:
            log.warning("could not edit message %s (%s); not editing it again", self.message.id, e)
            self._failed = True
            return False
        finally:
            self._written = self.clock()
        if edited is not None:
            self.message = edited
        self.shown = fields.get("content") or ""
        return True
