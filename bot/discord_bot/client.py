"""The thin Discord client: configuration from the environment, cogs loaded in `setup_hook`."""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable, Iterator

import discord
import yarl
from discord.ext import commands

from bot.config import DiscordConfig
from bot.errors import one_line
from bot.discord_bot.cogs.admin import AdminCog
from bot.discord_bot.cogs.ask import AskCog
from bot.feedback.votes import FeedbackStore
from bot.schema import Answer, Turn

log = logging.getLogger(__name__)

AnswerFn = Callable[[str, list[Turn]], Answer]
# With an LLM: the answer's text deltas as they are written (unverified), then the final Answer.
StreamFn = Callable[[str, list[Turn]], Iterator["str | Answer"]]
ReindexFn = Callable[[], str]

def apply_endpoints(config: DiscordConfig) -> None:
    """Point discord.py at another REST base / gateway (a local fake, a proxy); default: real Discord."""
    if config.api_base:
        discord.http.Route.BASE = config.api_base.rstrip("/")
    if config.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)


class StartupError(RuntimeError):
    """The warm-up (loading the models and the index) failed after a successful login."""


class QABot(commands.Bot):
    """Holds the answer/reindex functions and the config; the features live in the cogs, which
    reach these as attributes of the bot they are given (they never import this module).

    `stream_fn` (None without an LLM) makes answers appear as they are written.
    """

    def __init__(
        self, answer_fn: AnswerFn, reindex_fn: ReindexFn, config: DiscordConfig,
        warm_up: Callable[[], None] | None = None, stream_fn: StreamFn | None = None,
    ):
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here: no warning
        intents = discord.Intents.default()
        intents.message_content = config.message_content
        super().__init__(
            command_prefix=commands.when_mentioned,  # required by commands.Bot; no prefix commands exist
            help_command=None,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            chunk_guilds_at_startup=False,
            guild_ready_timeout=config.guild_ready_timeout,
        )
        self.answer_fn = answer_fn
        self.stream_fn = stream_fn
        self.reindex_fn = reindex_fn
        self.config = config
        self.warm_up = warm_up
        self.feedback = FeedbackStore(config.feedback_db)  # votes and the answers they are about

    async def setup_hook(self) -> None:
        # After login (so a bad token fails fast), before the gateway connects.
        if self.warm_up is not None:
            try:
                await asyncio.to_thread(self.warm_up)
            except Exception as e:
                raise StartupError(one_line(e)) from e
        await self.add_cog(AskCog(self))
        await self.add_cog(AdminCog(self))
        if self.config.sync_commands:
            synced = await self.tree.sync()
            log.info("synced %d application commands: %s", len(synced), ", ".join("/" + c.name for c in synced))

    async def on_message(self, message: discord.Message) -> None:
        """No prefix commands: questions in messages are handled by AskCog's listener."""

    async def on_ready(self) -> None:
        log.info("logged in as %s (id %s) in %d guild(s)", self.user, self.user.id if self.user else "?", len(self.guilds))


def run_bot(
    token: str, answer_fn: AnswerFn, reindex_fn: ReindexFn, config: DiscordConfig,
    warm_up: Callable[[], None] | None = None, stream_fn: StreamFn | None = None,
) -> None:
    """Run the bot until interrupted (Ctrl-C or SIGTERM).

    `warm_up` (blocking) runs in a thread once the token is accepted, before the gateway connects.
    `stream_fn` (blocking generator, consumed in a thread), if given, is used instead of `answer_fn`.
    Raises discord.LoginFailure for a rejected token, discord.PrivilegedIntentsRequired if the
    message content intent is not enabled for the application, StartupError if `warm_up` fails.
    """
    apply_endpoints(config)

    async def main() -> None:
        bot = QABot(answer_fn, reindex_fn, config, warm_up, stream_fn)
        async with bot:  # closes the HTTP session and gateway however start() ends
            loop = asyncio.get_running_loop()
            try:
                loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(bot.close()))
            except (NotImplementedError, RuntimeError):  # not on the main thread / Windows
                pass
            await bot.start(token)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
