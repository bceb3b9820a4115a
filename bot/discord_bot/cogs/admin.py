"""Administration: `/reindex` rebuilds the document index (administrators only by default)."""
from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.render import clip, plain
from bot.errors import one_line

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


class AdminCog(commands.Cog):
    def __init__(self, bot: commands.Bot):
        self.bot = bot
        self._reindexing = asyncio.Lock()

    @app_commands.command(name="reindex")
    @app_commands.default_permissions(administrator=True)  # server admins can grant it to other roles
    @app_commands.guild_only()  # default permissions do not apply in DMs
    async def reindex(self, interaction: discord.Interaction) -> None:
        """Rebuild the document index from the corpus (administrators only)."""
        channel = interaction.channel
        if not self.bot.config.allows(interaction.guild_id, interaction.channel_id, getattr(channel, "parent_id", None)):
            await interaction.response.send_message("I'm not enabled in this channel.", ephemeral=True,
                                                    allowed_mentions=NO_MENTIONS)
            return
        if self._reindexing.locked():
            await interaction.response.send_message("A reindex is already running.", ephemeral=True,
                                                    allowed_mentions=NO_MENTIONS)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self._reindexing:
            log.info("reindex requested by user %s", interaction.user.id)
            try:
                summary = await asyncio.to_thread(self.bot.reindex_fn)
            except Exception as e:
                log.exception("reindex failed")
                text = f"Reindex failed: {clip(one_line(e, 1500), 1500)}"
            else:
                text = f"Reindexed. {summary}"
        await interaction.followup.send(plain(text), ephemeral=True, allowed_mentions=NO_MENTIONS)
