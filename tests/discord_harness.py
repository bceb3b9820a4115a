"""The bot logged in to the fake Discord, shared by the Discord test modules."""
from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import discord

from bot.config import DiscordConfig
from bot.discord_bot.client import QABot, apply_endpoints
from bot.schema import Citation
from fake_discord import TOKEN, FakeDiscord


class FunctionLibrary:
    """The bot's library (bot/discord_bot/library.py) as plain functions that ignore the scope
    (each call's scope is recorded in `scopes_asked`), for tests of the Discord layer alone."""

    def __init__(self, answer_fn, reindex_fn, stream_fn=None):
        self.answer_fn, self.reindex_fn, self.stream_fn = answer_fn, reindex_fn, stream_fn
        self.scopes_asked: list[str] = []
        self.created: list[str] = []

    @property
    def streams(self) -> bool:
        return self.stream_fn is not None

    def answer(self, scope, question, history):
        self.scopes_asked.append(scope)
        return self.answer_fn(question, history)

    def stream(self, scope, question, history):
        self.scopes_asked.append(scope)
        yield from self.stream_fn(question, history)

    def reindex(self, scope):
        return self.reindex_fn()

    def create(self, scope):
        self.created.append(scope)
        return True


@contextlib.asynccontextmanager
async def bot_on_fake_discord(answer_fn=None, reindex_fn=None, *, stream_fn=None, library=None, fake_options=None,
                              **config):
    """The fake Discord and the unmodified bot logged in to it; on exit, nothing may have been
    rejected. The bot answers from `library`, else from the functions (FunctionLibrary).
    `config` goes to DiscordConfig (feedback_db defaults to $QABOT_TEST_TMP)."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord(**(fake_options or {})) as fake:
        config.setdefault("feedback_db", Path(os.environ["QABOT_TEST_TMP"]) / "feedback.sqlite3")
        cfg = DiscordConfig(api_base=fake.api_base, gateway_url=fake.gateway_url, guild_ready_timeout=0.05, **config)
        apply_endpoints(cfg)
        bot = QABot(library or FunctionLibrary(answer_fn, reindex_fn, stream_fn), None, cfg)
        task = asyncio.create_task(bot.start(TOKEN))
        try:
            await fake.wait_for(lambda: bot.is_ready() or task.done(), 5, "the bot to be ready")
            if task.done():
                task.result()
            yield fake, bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 5)
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        assert fake.rejected == [], f"the fake Discord rejected requests: {fake.rejected}"


def citation(n: int, quote: str = "Russia will leave the station after 2024.", **kw) -> Citation:
    """A citation for the fake answers of the Discord tests; `kw` overrides any field."""
    fields = dict(source="iss.txt", title=f"ISS article {n}", section="Withdrawal", page=None, quote=quote,
                  start=0, end=len(quote), score=0.9)
    fields.update(kw)
    return Citation(n=n, **fields)
