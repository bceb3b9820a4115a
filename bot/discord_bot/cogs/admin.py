"""Administration, for members with Manage Server (or a role in QABOT_ADMIN_ROLES): `/reindex`
and `/qabot …` — which scope answers where (`scope set/show/links`, `enable`, `disable`) and the
scope's documents (`add`, `remove`, `sources`).

Every command of this cog is checked server-side in `interaction_check` (the commands are also
hidden from other members, but that is only Discord's client honouring a default); refusals and
errors are ephemeral, one line.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.render import CONTENT_MAX, clip, plain
from bot.discord_bot.scopes import SERVER_WIDE, scope_name
from bot.discord_bot.uploads import KINDS, check_content, check_name
from bot.errors import QabotError, UploadRefused, one_line
from bot.source_links import check_template

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)
ADD_MENU = "Add to qabot"
MAX_FILES = 5  # per /qabot add or "Add to qabot"


class Refused(app_commands.CheckFailure):
    """A command that may not run here or by this member; its message is shown to them."""


class AdminCog(commands.Cog):
    qabot = app_commands.Group(name="qabot", description="Set up the question-answering bot in this server",
                               guild_only=True, default_permissions=ADMIN_PERMISSIONS)
    scope = app_commands.Group(name="scope", description="Which document collection answers here", parent=qabot)

    def __init__(self, bot: commands.Bot):
        self.bot = bot
        self._reindexing = asyncio.Lock()
        # Right-click a message → Apps → "Add to qabot": its attachments, as /qabot add. A context
        # menu cannot live inside the group, so it gets the cog's check and error handler by hand.
        self.add_menu = app_commands.ContextMenu(name=ADD_MENU, callback=self.add_from_message)
        self.add_menu.guild_only = True
        self.add_menu.default_permissions = ADMIN_PERMISSIONS
        self.add_menu.add_check(self.interaction_check)
        self.add_menu.error(self.cog_app_command_error)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.add_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.add_menu.name, type=self.add_menu.type)

    # -- the one permission check of every command here

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            raise Refused("This command only works in a server.")
        perms = interaction.permissions  # the member's, resolved in this channel
        if perms.administrator or perms.manage_guild:
            return True
        roles = {r.id for r in getattr(interaction.user, "roles", [])}
        if roles & self.bot.config.admin_roles:
            return True
        log.info("/%s refused for user %s (no Manage Server)", interaction.command.qualified_name
                 if interaction.command else "?", interaction.user.id)
        raise Refused("You need the Manage Server permission (or a bot admin role) for this command.")

    async def cog_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.CheckFailure):
            text = str(error)
        else:
            cause = getattr(error, "original", error)
            if isinstance(cause, QabotError):
                text = str(cause)
            else:
                log.error("/%s failed", interaction.command.qualified_name if interaction.command else "?",
                          exc_info=error)
                text = f"That failed: {one_line(cause, 300)}"
        await self._say(interaction, text)

    @staticmethod
    async def _say(interaction: discord.Interaction, text: str) -> None:
        text = plain(text)
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- where am I

    @staticmethod
    def _channel_id(interaction: discord.Interaction) -> int:
        """The channel a setting is made for: in a thread, its parent channel."""
        return getattr(interaction.channel, "parent_id", None) or interaction.channel_id

    def _scope_here(self, interaction: discord.Interaction) -> str:
        """The scope this channel answers from, for a command that changes it."""
        resolution = self.bot.scope_here(interaction.guild_id, interaction.channel_id,
                                         getattr(interaction.channel, "parent_id", None))
        if resolution.scope is None:
            raise Refused(f"No scope answers in this channel ({resolution.why}).")
        self._check_owner(resolution.scope, interaction.guild_id)
        return resolution.scope

    def _check_owner(self, scope: str, guild_id: int) -> None:
        """One bot may serve many servers: a scope made in one is not theirs to read or change."""
        owner = self.bot.scopes.owner(scope)
        if owner is not None and owner != guild_id:
            raise Refused(f"The scope `{scope}` belongs to another server; choose another name.")

    # -- /reindex

    @app_commands.command(name="reindex")
    @app_commands.default_permissions(administrator=True)  # server admins can grant it to other roles
    @app_commands.guild_only()  # default permissions do not apply in DMs
    async def reindex(self, interaction: discord.Interaction) -> None:
        """Re-sync this channel's document index with its corpus folder (administrators only)."""
        scope = self._scope_here(interaction)
        if self._reindexing.locked():
            await self._say(interaction, "A reindex is already running.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self._reindexing:
            log.info("reindex of %s requested by user %s", scope, interaction.user.id)
            try:
                summary = await asyncio.to_thread(self.bot.library.reindex, scope)
            except Exception as e:
                if not isinstance(e, QabotError):
                    log.exception("reindex failed")
                text = f"Reindex failed: {clip(one_line(e, 1500), 1500)}"
            else:
                text = f"Reindexed. {summary}"
        await interaction.followup.send(plain(text), ephemeral=True, allowed_mentions=NO_MENTIONS)

    # -- /qabot scope …

    @scope.command(name="set")
    @app_commands.describe(name="The scope (document collection); a new name makes an empty one",
                           where="This channel (default) or the whole server")
    async def scope_set(self, interaction: discord.Interaction, name: str,
                        where: Literal["channel", "server"] = "channel") -> None:
        """Answer questions here from the scope NAME."""
        name = scope_name(name)
        self._check_owner(name, interaction.guild_id)
        created = await asyncio.to_thread(self.bot.library.create, name)
        if created:
            await asyncio.to_thread(self.bot.scopes.claim, name, interaction.guild_id)
        channel_id = SERVER_WIDE if where == "server" else self._channel_id(interaction)
        await asyncio.to_thread(self.bot.scopes.set_place, interaction.guild_id, channel_id, scope=name,
                                enabled=True, by=interaction.user.id)
        place = "the whole server" if where == "server" else f"<#{channel_id}>"
        extra = " It is new and empty: add documents with /qabot add." if created else ""
        await self._say(interaction, f"Questions in {place} are now answered from the scope `{name}`.{extra}")

    @scope.command(name="show")
    async def scope_show(self, interaction: discord.Interaction) -> None:
        """Which scope answers in this channel, and why."""
        resolution = self.bot.scope_here(interaction.guild_id, interaction.channel_id,
                                         getattr(interaction.channel, "parent_id", None))
        if resolution.scope is None:
            await self._say(interaction, f"No scope answers here: {resolution.why}.")
            return
        template = self.bot.url_template(resolution.scope)
        links = f" Source links: `{template}`." if template else " No source links (/qabot scope links)."
        await self._say(interaction, f"Scope `{resolution.scope}` answers here: {resolution.why}.{links}")

    @scope.command(name="links")
    @app_commands.describe(template="e.g. https://docs.example.org/{path_without_suffix}.html#{section_anchor}; "
                                    "'off' removes the links")
    async def scope_links(self, interaction: discord.Interaction, template: str) -> None:
        """Link this channel's citations to their public pages."""
        scope = self._scope_here(interaction)
        value = None if template.strip().lower() in ("off", "none", "") else check_template(template)
        await asyncio.to_thread(self.bot.scopes.set_url_template, scope, value)
        text = f"Citations of `{scope}` now link to `{value}`." if value else f"Citations of `{scope}` have no links now."
        await self._say(interaction, text)

    # -- /qabot enable, disable

    async def _set_enabled(self, interaction: discord.Interaction, enabled: bool) -> int:
        """Turn this channel on or off, keeping its own scope if it has one; the channel's id."""
        channel_id = self._channel_id(interaction)
        own = self.bot.scopes.place(interaction.guild_id, channel_id)
        await asyncio.to_thread(self.bot.scopes.set_place, interaction.guild_id, channel_id,
                                scope=own.scope if own else None, enabled=enabled, by=interaction.user.id)
        return channel_id

    @qabot.command(name="enable")
    async def enable(self, interaction: discord.Interaction) -> None:
        """Answer questions in this channel (from its scope, or the server's)."""
        channel_id = await self._set_enabled(interaction, True)
        resolution = self.bot.scope_here(interaction.guild_id, channel_id)
        text = (f"Enabled in <#{channel_id}>, answering from the scope `{resolution.scope}`." if resolution.scope
                else f"Enabled in <#{channel_id}>, but no scope is set yet: /qabot scope set NAME.")
        await self._say(interaction, text)

    @qabot.command(name="disable")
    async def disable(self, interaction: discord.Interaction) -> None:
        """Stop answering questions in this channel."""
        channel_id = await self._set_enabled(interaction, False)
        await self._say(interaction, f"Disabled in <#{channel_id}>: I won't answer questions there.")

    # -- /qabot add, remove, sources

    @qabot.command(name="add")
    @app_commands.describe(file=f"A document ({KINDS})", file2="Another one", file3="And another")
    async def add(self, interaction: discord.Interaction, file: discord.Attachment,
                  file2: discord.Attachment | None = None, file3: discord.Attachment | None = None) -> None:
        """Add documents to this channel's scope."""
        await self._add(interaction, [a for a in (file, file2, file3) if a is not None])

    async def add_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The attachments of a message (e.g. one a member posted), as /qabot add."""
        if not message.attachments:
            raise Refused("That message has no attached files.")
        if len(message.attachments) > MAX_FILES:
            raise Refused(f"That message has {len(message.attachments)} files; I take {MAX_FILES} at a time.")
        await self._add(interaction, list(message.attachments))

    async def _add(self, interaction: discord.Interaction, attachments: list[discord.Attachment]) -> None:
        """Download, check, store and index `attachments` into this channel's scope, showing
        progress in the deferred reply and ending it with one line."""
        scope = self._scope_here(interaction)
        limit = self.bot.config.max_upload_bytes
        await interaction.response.defer(ephemeral=True, thinking=True)
        progress = Progress(interaction, self.bot.config.progress_interval)
        progress.show(f"Downloading {len(attachments)} file{'s' * (len(attachments) != 1)}…")
        ticker = asyncio.create_task(progress.run())
        try:
            files, refused = await self._download(attachments, limit)
            result_line = "nothing added"
            if files:
                progress.show(f"Indexing {', '.join(files)}…")

                def on_progress(done: int, total: int) -> None:  # called in the worker thread
                    progress.show(f"Indexing {len(files)} file{'s' * (len(files) != 1)}: {done}/{total} passages")

                result = await asyncio.to_thread(self.bot.library.add, scope, files, on_progress)
                result_line = result.line()
            if refused:
                result_line += f"; refused: {'; '.join(refused)}"
        except Exception as e:
            if not isinstance(e, QabotError):
                log.exception("/qabot add failed")
            why = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e, 1500)  # no "[Errno 28]"
            result_line = f"Nothing added: {why}"
        finally:
            ticker.cancel()
        await progress.finish(f"{result_line[:1].upper()}{result_line[1:]} (scope `{scope}`).")

    async def _download(self, attachments: list[discord.Attachment], limit: int) -> tuple[dict[str, bytes], list[str]]:
        files: dict[str, bytes] = {}
        refused: list[str] = []
        for attachment in attachments:
            try:
                name = check_name(attachment.filename, attachment.size, limit)
                try:
                    data = await attachment.read()
                except (discord.HTTPException, OSError) as e:
                    raise UploadRefused(f"{name}: could not be downloaded ({one_line(e, 100)})") from None
                check_content(name, data, limit)
            except UploadRefused as e:
                refused.append(str(e))
                continue
            files[name] = data
        return files, refused

    @qabot.command(name="remove")
    @app_commands.describe(file="The document's name, as /qabot sources lists it")
    async def remove(self, interaction: discord.Interaction, file: str) -> None:
        """Remove a document from this channel's scope."""
        scope = self._scope_here(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await asyncio.to_thread(self.bot.library.remove, scope, file.strip())
        await self._say(interaction, text)

    @qabot.command(name="sources")
    async def sources(self, interaction: discord.Interaction) -> None:
        """List the documents of this channel's scope."""
        scope = self._scope_here(interaction)
        names = await asyncio.to_thread(self.bot.library.sources, scope)
        if not names:
            await self._say(interaction, f"The scope `{scope}` has no documents yet: add some with /qabot add.")
            return
        head = f"The scope `{scope}` has {len(names)} document{'s' * (len(names) != 1)}:"
        lines, room = [head], CONTENT_MAX - len(head) - 40
        for i, name in enumerate(names):
            line = f"• `{name.replace('`', '')}`"
            if room - len(line) - 1 < 0:
                lines.append(f"… and {len(names) - i} more")
                break
            lines.append(line)
            room -= len(line) + 1
        await self._say(interaction, "\n".join(lines))


class Progress:
    """The deferred reply of /qabot add, edited in place: `show` (from any thread) sets the latest
    line, `run` writes it at most every `interval` seconds, `finish` writes the result."""

    def __init__(self, interaction: discord.Interaction, interval: float):
        self.interaction = interaction
        self.interval = interval
        self.latest = ""
        self.shown = ""

    def show(self, text: str) -> None:
        self.latest = clip(text, CONTENT_MAX)  # one reference assignment: safe from a worker thread

    async def run(self) -> None:
        while True:
            if self.latest != self.shown:
                await self._write(self.latest)
            await asyncio.sleep(self.interval)

    async def _write(self, text: str) -> None:
        self.shown = text
        try:
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as e:  # progress is a courtesy: the result still comes
            log.warning("could not show progress: %s", e)

    async def finish(self, text: str) -> None:
        await self._write(plain(text))
