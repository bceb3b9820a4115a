"""The 👍/👎 buttons under every answer. They carry only the answer's id: the answer itself is in
the feedback store (`bot.feedback`), so a click works whether or not the bot restarted since."""
from __future__ import annotations

import asyncio
import logging

import discord

from bot.schema import Answer

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


def answer_sources(answer: Answer) -> list[dict]:
    return [{"n": c.n, "source": c.source, "title": c.title, "section": c.section, "page": c.page}
            for c in answer.citations]


class VoteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"qabot:vote:(?P<vote>up|down):(?P<answer_id>[0-9a-f]{32})"):
    """👍 or 👎 under an answer. The button carries only the answer's id: the answer itself is in
    the feedback store, so a click works whether or not the bot restarted since it was shown."""

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
            text = "This answer is too old to vote on." if saved is None else \
                "Thanks for the feedback!" if self.vote == "up" else "Thanks — noted, this answer wasn't helpful."
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


def vote_view(answer_id: str, timeout: float) -> discord.ui.View:
    view = discord.ui.View(timeout=timeout)
    view.add_item(VoteButton("up", answer_id))
    view.add_item(VoteButton("down", answer_id))
    return view
