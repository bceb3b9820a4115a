"""Scopes end to end: `/qabot scope set/show`, `/qabot enable/disable` and the permission check
of every admin command, through the real discord.py client against the fake Discord.

The bot's library is the real one (bot/discord_bot/library.py: scope folders, loading each scope
once, one shared embedder); only the QA it builds per scope is a stand-in that says which scope
answered, so these tests run in seconds. tests/test_discord_documents.py runs the real QA.
"""
from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import discord
import pytest

from bot.config import Settings
from bot.discord_bot.library import Library
from bot.discord_bot.scopes import ScopeStore, scope_name
from bot.errors import SettingError
from bot.schema import Answer

sys.path.insert(0, str(Path(__file__).parent))
from discord_harness import bot_on_fake_discord, citation  # noqa: E402
from fake_discord import CHANNEL_ID, OTHER_CHANNEL_ID, ROLE_ID  # noqa: E402

ADMIN = str(discord.Permissions(manage_guild=True).value)
SERVER_ADMIN = str(discord.Permissions(administrator=True).value)


class ScopeQA:
    """Stands in for QA: answers "From <scope> [1]." citing a page of that scope's docs."""

    def __init__(self, name: str, settings: Settings, embedder):
        self.name, self.settings = name, settings
        self.embedder = embedder if embedder is not None else object()  # the first QA makes the embedder
        self.questions: list[str] = []
        self.histories: list[list] = []

    def answer(self, question: str, history=None) -> Answer:
        self.questions.append(question)
        self.histories.append(list(history or []))
        return Answer(question=question, text=f"From {self.name} [1].", refused=False,
                      citations=[citation(1, source=f"tutorial/{self.name}.rst", section="3.1. Getting started")])


def scoped_library(tmp_path: Path, make_qa=ScopeQA) -> Library:
    (tmp_path / "corpus").mkdir(exist_ok=True)  # the default scope exists, as for a bot set up before scopes
    return Library(Settings(corpus=tmp_path / "corpus", index=tmp_path / "index"), tmp_path / "scopes",
                   make_qa=make_qa)


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def run(coro):
    return asyncio.run(coro)


def replies(fake, token):
    """What the user saw in answer to the interaction: callback and follow-up messages."""
    return [s.payload for s in fake.sent_for(token)]


async def reply(fake, token, what="the reply") -> dict:
    await fake.wait_for(lambda: replies(fake, token), 5, what)
    return replies(fake, token)[0]


_askers = itertools.count(5000)  # one user per question: the rate limit (5/60 s per user) stays out of the way


async def ask(fake, question, channel_id=CHANNEL_ID, user_id=None) -> dict:
    user_id = next(_askers) if user_id is None else user_id
    token = await fake.slash("ask", {"question": question}, channel_id=channel_id, user_id=user_id)
    return await reply(fake, token, f"the answer to {question!r}")


def answered_from(payload: dict) -> str | None:
    """The scope named in an answer embed ("From alpha [1]."), None for a plain-text reply."""
    embeds = payload.get("embeds") or []
    return embeds[0]["description"].split()[1] if embeds else None


async def admin(fake, command, options=None, channel_id=CHANNEL_ID, **who) -> str:
    who.setdefault("permissions", ADMIN)
    token = await fake.slash(command, options, channel_id=channel_id, **who)
    return (await reply(fake, token, f"/{command}"))["content"]


def test_scope_names_are_checked():
    assert scope_name(" Python-Docs ") == "python-docs"
    for bad in ("", "-x", "a b", "x" * 33, "../etc", "docs-"):
        with pytest.raises(SettingError):
            scope_name(bad)


def test_qabot_commands_are_synced_for_admins_only():
    async def body():
        async with bot_on_fake_discord(library=scoped_library(Path.cwd())) as (fake, bot):
            (qabot,) = [c for c in fake.commands if c["name"] == "qabot"]
            assert int(qabot["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
            assert qabot["dm_permission"] is False
            subcommands = {o["name"]: o for o in qabot["options"]}
            assert set(subcommands) == {"scope", "enable", "disable", "add", "remove", "sources"}
            assert {o["name"] for o in subcommands["scope"]["options"]} == {"set", "show", "links"}
            add = {o["name"]: o for o in subcommands["add"]["options"]}
            assert add["file"]["type"] == 11 and add["file"]["required"] and not add["file2"]["required"]

    run(body())


def test_admin_commands_are_checked_server_side(tmp_path):
    """Command visibility is only a default in Discord's client: a member without Manage Server
    who runs the command anyway is refused by the bot, ephemerally, and nothing changes."""

    async def body():
        library = scoped_library(tmp_path)
        async with bot_on_fake_discord(library=library, admin_roles=frozenset({ROLE_ID})) as (fake, bot):
            for command, options in (("qabot scope set", {"name": "alpha"}), ("qabot disable", None),
                                     ("qabot sources", None), ("reindex", None)):
                token = await fake.slash(command, options, permissions="0")
                refusal = await reply(fake, token, f"the refusal of /{command}")
                assert refusal["flags"] & 64 and "Manage Server" in refusal["content"], command
            assert bot.scopes.resolve(fake_guild(), CHANNEL_ID).scope == "default"  # unchanged
            assert not (tmp_path / "scopes" / "alpha").exists()
            # The configured bot-admin role may; so may Manage Server and Administrator.
            text = await admin(fake, "qabot scope set", {"name": "alpha"}, permissions="0", roles=[ROLE_ID])
            assert "now answered from the scope `alpha`" in text and "new and empty" in text
            assert "`alpha`" in await admin(fake, "qabot scope show", permissions=SERVER_ADMIN)
            # A bad scope name is one ephemeral line.
            token = await fake.slash("qabot scope set", {"name": "no such/scope"}, permissions=ADMIN)
            bad = await reply(fake, token)
            assert bad["flags"] & 64 and "is not a scope name" in bad["content"]

    run(body())


def fake_guild() -> int:
    from fake_discord import GUILD_ID

    return GUILD_ID


def test_scopes_route_questions_and_survive_a_restart(tmp_path):
    library = scoped_library(tmp_path)

    async def before():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            # Nothing configured: the bot answers as it did before scopes, from the default scope.
            assert answered_from(await ask(fake, "q0")) == "default"
            assert answered_from(await ask(fake, "q0", channel_id=OTHER_CHANNEL_ID)) == "default"

            await admin(fake, "qabot scope set", {"name": "alpha"})  # for #general only
            assert answered_from(await ask(fake, "q1")) == "alpha"
            silent = await ask(fake, "q2", channel_id=OTHER_CHANNEL_ID)  # configured server: others are off
            assert silent["flags"] & 64 and silent["content"] == "I'm not enabled in this channel."
            mention = await fake.message("q3", mention_bot=True, channel_id=OTHER_CHANNEL_ID)
            assert "not enabled" in await admin(fake, "qabot scope show", channel_id=OTHER_CHANNEL_ID)

            text = await admin(fake, "qabot scope set", {"name": "beta", "where": "server"}, channel_id=OTHER_CHANNEL_ID)
            assert "the whole server" in text
            assert answered_from(await ask(fake, "q4", channel_id=OTHER_CHANNEL_ID)) == "beta"
            assert answered_from(await ask(fake, "q5")) == "alpha"  # the channel's own scope wins

            assert "won't answer" in await admin(fake, "qabot disable")
            assert (await ask(fake, "q6"))["content"] == "I'm not enabled in this channel."
            assert "scope `alpha`" in await admin(fake, "qabot enable")
            assert answered_from(await ask(fake, "q7")) == "alpha"
            assert fake.sent_in(int(mention["id"])) == [] and not fake.requests_to(
                "POST", f"/channels/{OTHER_CHANNEL_ID}/messages/{mention['id']}/threads")

    async def after():  # a new process: the settings come from disk
        async with bot_on_fake_discord(library=library) as (fake, bot):
            assert answered_from(await ask(fake, "q8")) == "alpha"
            assert answered_from(await ask(fake, "q9", channel_id=OTHER_CHANNEL_ID)) == "beta"
            show = await admin(fake, "qabot scope show")
            assert "Scope `alpha` answers here: scope `alpha` set for this channel" in show

    run(before())
    run(after())
    # One process, many scopes: each scope's QA built once, all sharing the first one's embedder.
    assert library.loads == {"default": 1, "alpha": 1, "beta": 1}
    qas = [library.qa(name) for name in ("default", "alpha", "beta")]
    assert qas[1].embedder is qas[0].embedder and qas[2].embedder is qas[0].embedder
    assert qas[1].questions == ["q1", "q5", "q7", "q8"] and qas[2].questions == ["q4", "q9"]
    assert (tmp_path / "scopes" / "alpha" / "corpus").is_dir()  # made by /qabot scope set
    assert ScopeStore(tmp_path / "scopes.sqlite3").resolve(fake_guild(), CHANNEL_ID).scope == "alpha"


def test_a_thread_follows_its_channels_scope(tmp_path):
    library = scoped_library(tmp_path)

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "alpha"})
            question = await fake.message("What is it?", mention_bot=True)
            thread_id = int(question["id"])
            await fake.wait_for(lambda: fake.sent_in(thread_id), 5, "the answer in the thread")
            assert fake.sent_in(thread_id)[0].payload["embeds"][0]["description"] == "From alpha [1]."
            await fake.message("And then?", channel_id=thread_id)
            await fake.wait_for(lambda: len(fake.sent_in(thread_id)) == 2, 5, "the follow-up")
            # Disabled in the channel: its threads fall silent too.
            await admin(fake, "qabot disable")
            await fake.message("Still there?", channel_id=thread_id)
            await asyncio.sleep(0.3)
            assert len(fake.sent_in(thread_id)) == 2

    run(body())
    assert library.qa("alpha").questions == ["What is it?", "And then?"]


def test_community_settings_from_the_environment():
    from bot.config import DiscordConfig

    cfg = DiscordConfig.from_env({})
    assert (cfg.scopes_dir, cfg.admin_roles, cfg.support_channel, cfg.support_role, cfg.source_url) == (
        Path("scopes"), frozenset(), None, None, None)
    assert cfg.max_upload_bytes == 8 * 1024 * 1024
    cfg = DiscordConfig.from_env({"QABOT_SCOPES_DIR": "/srv/scopes", "QABOT_ADMIN_ROLES": "5, 6",
                                  "QABOT_SUPPORT_CHANNEL": "7", "QABOT_SUPPORT_ROLE": "8", "QABOT_MAX_UPLOAD_MB": "2.5",
                                  "QABOT_SOURCE_URL": "https://x.org/{path}"})
    assert (cfg.scopes_dir, cfg.admin_roles, cfg.support_channel, cfg.support_role, cfg.source_url) == (
        Path("/srv/scopes"), frozenset({5, 6}), 7, 8, "https://x.org/{path}")
    assert cfg.max_upload_bytes == int(2.5 * 1024 * 1024)
    for bad in ({"QABOT_SUPPORT_ROLE": "1,2"}, {"QABOT_MAX_UPLOAD_MB": "lots"}, {"QABOT_MAX_UPLOAD_MB": "0"},
                {"QABOT_ADMIN_ROLES": "mods"}):
        with pytest.raises(SettingError):
            DiscordConfig.from_env(bad)


def test_a_scope_made_in_another_server_is_not_this_ones(tmp_path):
    """One bot may serve many servers: a scope made from Discord belongs to its server; one made
    on the bot's machine (or the default) is shared by the operator with all of them."""
    ScopeStore(tmp_path / "scopes.sqlite3").claim("theirs", 999)  # made by admins of server 999
    library = scoped_library(tmp_path)
    library.create("theirs")
    library.create("shared")  # made on the bot's machine: no owner

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            assert "belongs to another server" in await admin(fake, "qabot scope set", {"name": "theirs"})
            assert bot.scopes.place(fake_guild(), CHANNEL_ID) is None
            assert "now answered from the scope `shared`" in await admin(fake, "qabot scope set", {"name": "shared"})
            assert "now answered from the scope `ours`" in await admin(fake, "qabot scope set", {"name": "ours"})
            assert bot.scopes.owner("ours") == fake_guild() and bot.scopes.owner("shared") is None

    run(body())


def test_without_a_default_scope_dms_are_not_answered(tmp_path):
    """A bot serving scopes only (no corpus/index of its own) has nothing to answer DMs from."""
    library = Library(Settings(corpus=tmp_path / "none", index=tmp_path / "none-index"), tmp_path / "scopes",
                      make_qa=ScopeQA)

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "alpha", "where": "server"})
            assert answered_from(await ask(fake, "in the server")) == "alpha"
            await fake.message("in a DM", dm=True, channel_id=555, user_id=77)
            await asyncio.sleep(0.3)
            assert fake.sent_in(555) == []

    run(body())
