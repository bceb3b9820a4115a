"""The thin Discord client: configuration from the environment, cogs loaded in `setup_hook`."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import discord
import yarl
from discord.ext import commands

from bot.discord_bot.ratelimit import parse_rate_limit
from bot.feedback import DEFAULT_PATH as DEFAULT_FEEDBACK_DB
from bot.schema import Answer, Turn

log = logging.getLogger(__name__)

AnswerFn = Callable[[str, list[Turn]], Answer]
# With an LLM: the answer's text deltas as they are written (unverified), then the final Answer.
StreamFn = Callable[[str, list[Turn]], Iterator["str | Answer"]]
ReindexFn = Callable[[], str]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _ids(value: str, name: str) -> frozenset[int]:
    try:
        return frozenset(int(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numeric ids, got {value!r}") from None


def _flag(value: str | None, default: bool, name: str) -> bool:
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be 1/0 (true/false), got {value!r}")


@dataclass
class DiscordConfig:
    """Everything the Discord front end can be configured with; `from_env` is the one place it is read."""

    allowed_guilds: frozenset[int] = frozenset()  # empty: every guild
    allowed_channels: frozenset[int] = frozenset()  # empty: every channel (threads count as their parent)
    answer_dms: bool = True
    rate_limit: tuple[int, float] = (5, 60.0)  # questions per seconds, per user; (0, 0) disables
    feedback_db: Path = field(default_factory=lambda: DEFAULT_FEEDBACK_DB)
    api_base: str | None = None  # e.g. http://127.0.0.1:8080/api/v10; None: real Discord
    gateway_url: str | None = None  # e.g. ws://127.0.0.1:8080/; None: real Discord
    message_content: bool = True  # privileged intent: needed to answer thread follow-ups without a mention
    history_turns: int = 6  # earlier Q/A of a thread passed along with a follow-up
    sync_commands: bool = True
    guild_ready_timeout: float = 2.0
    vote_timeout: float = 24 * 3600.0  # how long an answer's 👍/👎 view stays in memory (clicks after that,
    # or after a restart, are still recorded: the answer is in the feedback store for 90 days)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DiscordConfig":
        env = os.environ if env is None else env
        return cls(
            allowed_guilds=_ids(env.get("QABOT_ALLOWED_GUILDS", ""), "QABOT_ALLOWED_GUILDS"),
            allowed_channels=_ids(env.get("QABOT_ALLOWED_CHANNELS", ""), "QABOT_ALLOWED_CHANNELS"),
            answer_dms=_flag(env.get("QABOT_DISCORD_DMS"), True, "QABOT_DISCORD_DMS"),
            rate_limit=parse_rate_limit(env.get("QABOT_RATE_LIMIT", "5/60")),
            feedback_db=Path(env.get("QABOT_FEEDBACK_DB") or DEFAULT_FEEDBACK_DB),
            api_base=env.get("DISCORD_API_BASE") or None,
            gateway_url=env.get("DISCORD_GATEWAY_URL") or None,
            message_content=_flag(env.get("QABOT_DISCORD_MESSAGE_CONTENT"), True, "QABOT_DISCORD_MESSAGE_CONTENT"),
        )

    def allows(self, guild_id: int | None, channel_id: int | None, parent_id: int | None = None) -> bool:
        """Whether the bot may answer here. DMs (no guild) depend on `answer_dms` only."""
        if guild_id is None:
            return self.answer_dms
        if self.allowed_guilds and guild_id not in self.allowed_guilds:
            return False
        return not self.allowed_channels or bool({channel_id, parent_id} & self.allowed_channels)


def apply_endpoints(config: DiscordConfig) -> None:
    """Point discord.py at another REST base / gateway (a local fake, a proxy); default: real Discord."""
    if config.api_base:
        discord.http.Route.BASE = config.api_base.rstrip("/")
    if config.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)


class UserFacingError(Exception):
    """Raised by answer_fn or stream_fn when the question cannot be answered; the message is shown to the user."""


class StartupError(RuntimeError):
    """The warm-up (loading the models and the index) failed after a successful login."""


class QABot(commands.Bot):
    """Holds the answer/reindex functions and the config; the features live in the cogs.

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

    async def setup_hook(self) -> None:
        # After login (so a bad token fails fast), before the gateway connects.
        if self.warm_up is not None:
            try:
                await asyncio.to_thread(self.warm_up)
            except Exception as e:
                raise StartupError(f"{type(e).__name__}: {e}") from e
        from bot.discord_bot.admin_cog import AdminCog
        from bot.discord_bot.ask_cog import AskCog

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
