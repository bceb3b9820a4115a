"""The thin Discord client: configuration from the environment, cogs loaded in `setup_hook`."""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

import discord
import yarl
from discord.ext import commands

from bot.config import DiscordConfig
from bot.errors import one_line
from bot.discord_bot.cogs.admin import AdminCog
from bot.discord_bot.cogs.ask import AskCog
from bot.discord_bot.library import OneCorpus
from bot.discord_bot.ratelimit import RateLimiter
from bot.discord_bot.scopes import DEFAULT_SCOPE, Resolution, ScopeStore
from bot.feedback.votes import FeedbackStore

log = logging.getLogger(__name__)

HANDOFF_LIMIT = (3, 3600.0)  # hand-offs to the support team per user per hour

def apply_endpoints(config: DiscordConfig) -> None:
    """Point discord.py at another REST base / gateway (a local fake, a proxy); default: real Discord."""
    if config.api_base:
        discord.http.Route.BASE = config.api_base.rstrip("/")
    if config.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)


class StartupError(RuntimeError):
    """The warm-up (loading the models and the index) failed after a successful login."""


class QABot(commands.Bot):
    """Holds the library of scopes, the scope settings and the config; the features live in the
    cogs, which reach these as attributes of the bot they are given (they never import this module).

    `answer_fn` is either a library (library.Library, what `qabot discord` gives: answer, stream,
    reindex, add, remove and sources per scope) or, as before scopes, a function answering
    (question, history) from the one corpus, with `reindex_fn` and `stream_fn` (None without an
    LLM): that corpus is then the default scope (library.OneCorpus).
    """

    def __init__(self, answer_fn, reindex_fn, config: DiscordConfig, warm_up: Callable[[], None] | None = None,
                 stream_fn: Callable | None = None, scopes: ScopeStore | None = None):
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
        self.library = answer_fn if callable(getattr(answer_fn, "answer", None)) else \
            OneCorpus(answer_fn, reindex_fn, stream_fn)
        self.warm_up = warm_up
        self.config = config
        self.feedback = FeedbackStore(config.feedback_db)  # votes and the answers they are about
        # "Still need help?" pings people: once per answer, and a few times an hour per user.
        self.handoffs = RateLimiter(*HANDOFF_LIMIT)
        self.handed_off: set[str] = set()  # answer ids already passed on (since this process started)
        self.scopes = scopes if scopes is not None else ScopeStore(config.feedback_db.with_name("scopes.sqlite3"))

    def scope_here(self, guild_id: int | None, channel_id: int | None, parent_id: int | None = None) -> Resolution:
        """Which scope answers in this channel (a thread: its parent's), after the allow-lists."""
        if not self.config.allows(guild_id, channel_id, parent_id):
            return Resolution(None, "not in the bot's allowed servers/channels (QABOT_ALLOWED_*)")
        if guild_id is None:  # DMs are answered from the default scope, if the bot has one
            exists = getattr(self.library, "exists", lambda name: True)
            if not exists(DEFAULT_SCOPE):
                return Resolution(None, "a direct message, and the bot has no default scope")
            return Resolution(DEFAULT_SCOPE, "a direct message: the default scope")
        return self.scopes.resolve(guild_id, channel_id, parent_id)

    def url_template(self, scope: str) -> str | None:
        """The scope's source link template: set with /qabot scope links, else (default scope)
        QABOT_SOURCE_URL."""
        return self.scopes.url_template(scope) or (self.config.source_url if scope == DEFAULT_SCOPE else None)

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


def run_bot(token: str, answer_fn, reindex_fn, config: DiscordConfig, warm_up: Callable[[], None] | None = None,
            stream_fn: Callable | None = None) -> None:
    """Run the bot until interrupted (Ctrl-C or SIGTERM). `answer_fn`...`stream_fn` are QABot's.

    `warm_up` (blocking) runs in a thread once the token is accepted, before the gateway
    connects. Raises discord.LoginFailure for a rejected token, discord.PrivilegedIntentsRequired
    if the message content intent is not enabled for the application, StartupError if the
    warm-up fails.
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
