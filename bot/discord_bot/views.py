"""The buttons under every answer: 👍/👎 (👎 then asks for an optional reason in a modal) and,
where support is configured, "Still need help?", which hands the question to people.

The buttons carry only the answer's id: the answer itself is in the feedback store
(`bot.feedback`), so a click works whether or not the bot restarted since.
"""
from __future__ import annotations

import asyncio
import logging

import discord

from bot.discord_bot.render import clip, plain
from bot.schema import Answer

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
REASON_MAX = 500
HELP_LABEL = "Still need help?"


def answer_sources(answer: Answer, link=None) -> list[dict]:
    """The citations as stored with the answer (and its votes); `link` adds each one's public page."""
    sources = []
    for c in answer.citations:
        source = {"n": c.n, "source": c.source, "title": c.title, "section": c.section, "page": c.page}
        url = link(c) if link else None
        if url:
            source["url"] = url
        sources.append(source)
    return sources


class ReasonModal(discord.ui.Modal, title="What was wrong with this answer?"):
    """The optional reason after a 👎 (the vote itself is already recorded)."""

    reason = discord.ui.TextInput(label="Reason (optional)", style=discord.TextStyle.paragraph,
                                  required=False, max_length=REASON_MAX,
                                  placeholder="e.g. it quotes an outdated page; the answer is in the FAQ")

    def __init__(self, ref: str | None) -> None:
        super().__init__(timeout=15 * 60)
        self.ref = ref

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = " ".join(self.reason.value.split())
        if text and self.ref:
            try:
                await asyncio.to_thread(interaction.client.feedback.record_reason, ref=self.ref,
                                        user_id=interaction.user.id, reason=text)
            except Exception:
                log.exception("could not record the reason")
                await interaction.response.send_message("Sorry, I couldn't save your reason.", ephemeral=True,
                                                        allowed_mentions=NO_MENTIONS)
                return
        await interaction.response.send_message("Thanks — noted, this answer wasn't helpful.", ephemeral=True,
                                                allowed_mentions=NO_MENTIONS)


class VoteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"qabot:vote:(?P<vote>up|down):(?P<answer_id>[0-9a-f]{32})"):
    """👍 or 👎 under an answer (see the module docstring)."""

    def __init__(self, vote: str, answer_id: str) -> None:
        super().__init__(discord.ui.Button(
            emoji="👍" if vote == "up" else "👎", style=discord.ButtonStyle.secondary,
            custom_id=f"qabot:vote:{vote}:{answer_id}"))
        self.vote, self.answer_id = vote, answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match):
        return cls(match["vote"], match["answer_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        ref = f"discord:{interaction.message.id}" if interaction.message else None
        store = interaction.client.feedback  # the bot's FeedbackStore (QABot.feedback)
        try:
            saved = await asyncio.to_thread(store.saved_answer, self.answer_id)
            if saved is not None:
                await asyncio.to_thread(store.record, **saved, user_id=interaction.user.id,
                                        vote=self.vote, ref=ref)
        except Exception:
            log.exception("could not record feedback")
            saved, text = None, "Sorry, I couldn't save your feedback."
        else:
            if saved is not None and self.vote == "down":
                await interaction.response.send_modal(ReasonModal(ref))  # the vote counts even if it is dismissed
                return
            text = "This answer is too old to vote on." if saved is None else "Thanks for the feedback!"
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class HelpButton(discord.ui.DynamicItem[discord.ui.Button], template=r"qabot:help:(?P<answer_id>[0-9a-f]{32})"):
    """"Still need help?": posts the question in the support channel (configured), pinging the
    support role (configured) — the only mention the bot ever makes; never @everyone or users."""

    def __init__(self, answer_id: str) -> None:
        super().__init__(discord.ui.Button(label=HELP_LABEL, style=discord.ButtonStyle.primary,
                                           custom_id=f"qabot:help:{answer_id}"))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match):
        return cls(match["answer_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        config = bot.config
        saved = await asyncio.to_thread(bot.feedback.saved_answer, self.answer_id)
        if saved is None:
            await interaction.response.send_message("This answer is too old to hand on; please ask again.",
                                                    ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        if not (config.support_channel or config.support_role) or interaction.guild_id is None:
            await interaction.response.send_message("Nobody is set up to take questions here, sorry.",
                                                    ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        if self.answer_id in bot.handed_off:
            await interaction.response.send_message("This question has already been passed on to the team.",
                                                    ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        if bot.handoffs.hit(interaction.user.id):
            await interaction.response.send_message("You've asked for help several times in the last hour; "
                                                    "the team will get to it — please wait a little.",
                                                    ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        bot.handed_off.add(self.answer_id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        where = interaction.message.jump_url if interaction.message else ""
        ping = f"<@&{config.support_role}> " if config.support_role else ""
        question = clip(" ".join(saved["question"].split()), 1000)
        answered = "it found no answer" if saved["refused"] else "its answer did not help"
        text = plain(f"{ping}{interaction.user.mention} still needs help ({answered}): {where}\n> {question}")
        mentions = discord.AllowedMentions(everyone=False, users=False, replied_user=False,
                                           roles=[discord.Object(config.support_role)] if config.support_role else False)
        channel_id = config.support_channel or interaction.channel_id
        try:
            await bot.get_partial_messageable(channel_id, guild_id=interaction.guild_id).send(
                text, allowed_mentions=mentions)
        except discord.HTTPException as e:
            log.warning("could not post in the support channel %s: %s", channel_id, e)
            reply = "Sorry, I couldn't reach the support channel; please ask the moderators directly."
        else:
            reply = (f"I've passed your question on in <#{channel_id}>; someone will get back to you."
                     if config.support_channel else "I've asked the support team to have a look here.")
        await interaction.followup.send(reply, ephemeral=True, allowed_mentions=NO_MENTIONS)


def vote_view(answer_id: str, timeout: float, support: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=timeout)
    view.add_item(VoteButton("up", answer_id))
    view.add_item(VoteButton("down", answer_id))
    if support:
        view.add_item(HelpButton(answer_id))
    return view
