"""Questions: the `/ask` slash command, `@bot question` (answered in a new thread), follow-ups in
that thread without a mention, posts in forums that have a scope, DMs, and the buttons under
every answer. Each is answered from the scope of its channel (client.QABot.scope_here), or not at all.

With an LLM (the library `streams`) answers appear as they are written, in one message that is
edited in place and finally replaced by the verified answer (see `stream.LiveMessage`)."""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
import weakref
from collections import OrderedDict
from typing import Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.ratelimit import RateLimiter
from bot.discord_bot.render import clip, plain, render_answer
from bot.discord_bot.stream import LiveMessage
from bot.errors import QabotError
from bot.feedback.conversations import ConversationStore
from bot.discord_bot.views import HelpButton, VoteButton, answer_sources, vote_view
from bot.schema import Answer, Turn
from bot.source_links import source_url
log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
MAX_CONVERSATIONS = 2000  # threads/DMs whose history is kept in memory (least recently used dropped)
THREAD_NAME_MAX = 100
ERROR_TEXT = "Sorry, something went wrong while answering. Please try again in a moment."
NOT_HERE_TEXT = "I'm not enabled in this channel."


def slow_down_text(wait: float) -> str:
    return f"You're asking questions a little fast — please wait {max(1, round(wait))} s and try again."


def is_forum_post(channel) -> bool:
    """A thread that is a post of a forum channel (its first message is the question)."""
    return isinstance(channel, discord.Thread) and isinstance(channel.parent, discord.ForumChannel)


class AskCog(commands.Cog):
    def __init__(self, bot: commands.Bot):
        self.bot = bot
        self.config = bot.config
        self.limiter = RateLimiter(*bot.config.rate_limit)
        self.feedback = bot.feedback
        bot.add_dynamic_items(VoteButton, HelpButton)  # clicks on buttons of answers shown before a restart
        # Threads the bot opened (and DM channels) → their earlier Q/A, oldest first; also on disk,
        # next to the votes, so follow-ups still work after a restart.
        self.conversations: OrderedDict[int, list[Turn]] = OrderedDict()
        self.history_store = ConversationStore(bot.config.feedback_db.with_name("conversations.sqlite3"),
                                               keep=bot.config.history_turns)
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- the shared path: scope + question → the bot's library (QA.answer or QA.stream of that
    #    scope) in a worker thread → rendered messages

    async def answer(self, scope: str, question: str, history: list[Turn], live: LiveMessage | None = None) -> Answer:
        """The answer to `question` from `scope`; with an LLM and a `live` message, shown while it is written."""
        library = self.bot.library
        if live is not None and library.streams:
            return await live.stream(functools.partial(library.stream, scope), question, list(history))
        # Answering blocks (retrieval, models): never on the event loop, or the gateway heartbeat stalls.
        return await asyncio.to_thread(library.answer, scope, question, list(history))

    def live_message(self, send: Callable[..., Awaitable[discord.Message | None]], **every) -> LiveMessage | None:
        """Where a streamed answer is shown as it grows (None without an LLM): a message sent with `send`."""
        if not self.bot.library.streams:
            return None
        return LiveMessage(lambda text: send(text, allowed_mentions=NO_MENTIONS, **every))

    async def send_answer(
        self, send: Callable[..., Awaitable[discord.Message | None]], answer: Answer, scope: str,
        reference: discord.MessageReference | None = None, live: LiveMessage | None = None, **every,
    ) -> None:
        """Send `answer` as one or more messages; the first replies to `reference` (or replaces the
        streamed text of `live`), the last has the votes (and "Still need help?" where support is set)."""
        template = self.bot.url_template(scope)
        link = functools.partial(source_url, template) if template else None
        messages = render_answer(answer, link=link)
        answer_id = uuid.uuid4().hex
        try:
            await asyncio.to_thread(self.feedback.save_answer, answer_id, question=answer.question, answer=answer.text,
                                    sources=answer_sources(answer, link), refused=answer.refused,
                                    answerer=answer.answerer, scope=scope)
        except Exception:  # no buttons then, rather than buttons that cannot record
            log.exception("could not store the answer for votes")
            answer_id = None
        for i, message in enumerate(messages):
            kwargs = dict(every)
            if i == 0 and reference is not None:
                kwargs["reference"] = reference
            view = None
            if i == len(messages) - 1 and answer_id is not None:
                view = kwargs["view"] = vote_view(answer_id, self.config.vote_timeout,
                                                  support=bool(self.config.support_channel or self.config.support_role))
            if i == 0 and live is not None and await live.finish(
                content=None, embeds=message.embeds, allowed_mentions=NO_MENTIONS, **({"view": view} if view else {})
            ):
                continue
            await send(embeds=message.embeds, allowed_mentions=NO_MENTIONS, **kwargs)

    async def send_error(
        self, send: Callable[..., Awaitable[discord.Message | None]], text: str, live: LiveMessage | None = None,
        **every,
    ) -> None:
        """Show an error: in place of the streamed text if some was shown, else as a new message."""
        if live is None or not await live.finish(content=text, embeds=[], allowed_mentions=NO_MENTIONS):
            await send(text, allowed_mentions=NO_MENTIONS, **every)

    # -- /ask

    @app_commands.command(name="ask")
    @app_commands.describe(question="Your question about the documents")
    async def ask(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 1000]) -> None:
        """Ask a question; the answer cites the documents it comes from."""
        channel = interaction.channel
        scope = self.bot.scope_here(interaction.guild_id, interaction.channel_id, getattr(channel, "parent_id", None)).scope
        if scope is None:
            await interaction.response.send_message(NOT_HERE_TEXT, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        wait = self.limiter.hit(interaction.user.id)
        if wait:
            await interaction.response.send_message(slow_down_text(wait), ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        await interaction.response.defer(thinking=True)
        live = self.live_message(interaction.followup.send, wait=True)
        try:
            answer = await self.answer(scope, question, [], live)
        except Exception as e:
            await self.send_error(interaction.followup.send, self._error_text(e, question), live)
            return
        await self.send_answer(interaction.followup.send, answer, scope, live=live, wait=True)

    # -- @mention, thread follow-ups, DMs

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None or self.bot.user is None:
            return
        channel = message.channel
        me = self.bot.user
        known = channel.id in self.conversations
        if message.guild is None and not self.config.answer_dms:
            return
        mentioned = self._mentions_me(message)
        here = self.bot.scope_here(message.guild.id if message.guild else None, channel.id,
                                   getattr(channel, "parent_id", None))
        scope = here.scope
        # Every post of a forum whose scope an admin set is a question (not so in a server nobody
        # configured: a bot set up before scopes answered mentions only, and still does).
        forum_post = is_forum_post(channel) and here.chosen
        if message.guild is not None:
            own_thread = known or (isinstance(channel, discord.Thread) and channel.owner_id == me.id)
            if not own_thread and not mentioned and not forum_post:
                return
        if scope is None:  # not enabled here (or disabled since the thread was opened), or no DMs
            return

        question = self._strip_mentions_of_me(message)
        if not question:
            if not mentioned:  # e.g. an image, or no message content intent: nothing to answer
                return
            await channel.send(
                "Ask me a question about the documents, e.g. `@me What is …?`", allowed_mentions=NO_MENTIONS,
                reference=message.to_reference(fail_if_not_exists=False),
            )
            return
        wait = self.limiter.hit(message.author.id)
        if wait:
            await channel.send(
                slow_down_text(wait), allowed_mentions=NO_MENTIONS,
                reference=message.to_reference(fail_if_not_exists=False),
            )
            return

        if message.guild is None or known or isinstance(channel, discord.Thread):
            # A DM or a thread: answer in place, following up on the earlier Q/A of the bot's
            # conversations (its own threads, and forum posts: the post's later messages are follow-ups).
            track = message.guild is None or known or forum_post or getattr(channel, "owner_id", None) == me.id
            await self._converse(channel, scope, question, message, track=track)
            return
        try:
            name = clip(" ".join(question.split()), THREAD_NAME_MAX)
            thread = await message.create_thread(name=name, auto_archive_duration=1440)
        except discord.HTTPException as e:  # e.g. no permission to create threads: answer in the channel
            log.warning("could not open a thread in channel %s (%s); answering in the channel", channel.id, e)
            await self._converse(channel, scope, question, message, track=False)
            return
        self._remember(thread.id)
        await self._converse(thread, scope, question, None, track=True)

    async def _converse(
        self, channel: discord.abc.Messageable, scope: str, question: str, reply_to: discord.Message | None, *,
        track: bool,
    ) -> None:
        lock = self._locks.get(channel.id)
        if lock is None:  # kept alive by the coroutines using it, then dropped from the weak mapping
            lock = self._locks[channel.id] = asyncio.Lock()
        async with lock:  # answer a conversation's messages in order, each seeing the previous turns
            if track and channel.id not in self.conversations:
                await self._restore(channel.id)
            history = self.conversations.get(channel.id, []) if track else []
            history = history[-self.config.history_turns:] if self.config.history_turns else []
            reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to else None
            live = self.live_message(channel.send, reference=reference)
            try:
                async with channel.typing():
                    answer = await self.answer(scope, question, history, live)
            except Exception as e:
                await self.send_error(channel.send, self._error_text(e, question), live, reference=reference)
                return
            if track:
                # Stored before the answer goes out: a bot stopped right after sending it (the test
                # saw it under load) kept the answer on Discord and lost the turn it follows up on.
                turn = Turn(question=question, answer=answer.text)
                self._remember(channel.id, turn)
                try:
                    await asyncio.to_thread(self.history_store.add, channel.id, turn)
                except Exception:  # losing the history on a restart is the lesser harm than no answer
                    log.exception("could not store the conversation turn")
            await self.send_answer(channel.send, answer, scope, reference, live)

    async def _restore(self, conversation_id: int) -> None:
        """A conversation from before a restart: its stored turns, if any."""
        try:
            turns = await asyncio.to_thread(self.history_store.turns, conversation_id)
        except Exception:
            log.exception("could not read the stored conversation")
            return
        if turns:
            self._remember(conversation_id, *turns)

    def _mentions_me(self, message: discord.Message) -> bool:
        me = self.bot.user
        role = message.guild.self_role if message.guild else None  # the bot's own role, also "@qabot" in the UI
        return any(u.id == me.id for u in message.mentions) or (role is not None and role in message.role_mentions)

    def _strip_mentions_of_me(self, message: discord.Message) -> str:
        text = re.sub(rf"<@!?{self.bot.user.id}>", " ", message.content)
        role = message.guild.self_role if message.guild else None
        if role is not None:
            text = text.replace(f"<@&{role.id}>", " ")
        return re.sub(r"[ \t]+", " ", text).strip()

    @staticmethod
    def _error_text(error: Exception, question: str) -> str:
        if isinstance(error, QabotError):
            return plain(str(error) or ERROR_TEXT)
        log.error("answering %r failed", question, exc_info=error)
        return ERROR_TEXT

    def _remember(self, conversation_id: int, *new_turns: Turn) -> None:
        """Mark the conversation as the bot's and most recently used, with `new_turns` appended."""
        turns = self.conversations.pop(conversation_id, [])
        turns.extend(new_turns)
        del turns[: -max(self.config.history_turns, 1)]
        self.conversations[conversation_id] = turns
        while len(self.conversations) > MAX_CONVERSATIONS:
            self.conversations.popitem(last=False)

    async def cog_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("/%s failed", interaction.command.name if interaction.command else "?", exc_info=error)
        send = interaction.followup.send if interaction.response.is_done() else interaction.response.send_message
        await send(plain(ERROR_TEXT), ephemeral=True, allowed_mentions=NO_MENTIONS)
