"""Forum channels end to end: a post in a forum whose scope is set is answered in that post, and
replies in the post are follow-ups with the earlier Q/A, as in the bot's own threads."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bot.schema import Turn

sys.path.insert(0, str(Path(__file__).parent))
from discord_harness import bot_on_fake_discord  # noqa: E402
from fake_discord import FORUM_ID  # noqa: E402
from test_discord_scopes import admin, scoped_library  # noqa: E402


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def run(coro):
    return asyncio.run(coro)


def descriptions(fake, channel_id: int) -> list[str]:
    return [s.payload["embeds"][0]["description"] for s in fake.sent_in(channel_id)]


def test_forum_posts_are_answered_in_the_post_once_the_forum_has_a_scope(tmp_path):
    library = scoped_library(tmp_path)

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            # A server nobody configured: posts are left to people (a mention is still answered).
            quiet = await fake.forum_post("Kettle?", "How do I descale the kettle?")
            mentioned = await fake.forum_post("Dues?", "When are dues paid?", mention_bot=True)
            await fake.wait_for(lambda: fake.sent_in(int(mentioned["id"])), 5, "the answer to the mention")
            await asyncio.sleep(0.2)
            assert fake.sent_in(int(quiet["id"])) == []

            # An admin sets the forum's scope from inside a post (the setting is the forum's).
            text = await admin(fake, "qabot scope set", {"name": "alpha"}, channel_id=int(quiet["id"]))
            assert f"<#{FORUM_ID}>" in text

            post = await fake.forum_post("Meetings", "When does the club meet?", user_id=42)
            post_id = int(post["id"])
            await fake.wait_for(lambda: fake.sent_in(post_id), 5, "the answer in the post")
            (answer,) = fake.sent_in(post_id)
            assert answer.payload["embeds"][0]["description"] == "From alpha [1]."
            assert str(answer.payload["message_reference"]["message_id"]) == post["id"]
            assert not fake.requests_to("POST", f"/channels/{FORUM_ID}/messages")  # no thread of its own

            await fake.message("And where?", channel_id=post_id, user_id=42)
            await fake.wait_for(lambda: len(fake.sent_in(post_id)) == 2, 5, "the follow-up")
            alpha = library.qa("alpha")
            assert alpha.questions == ["When does the club meet?", "And where?"]
            assert descriptions(fake, post_id) == ["From alpha [1].", "From alpha [1]."]

            # The forum disabled: its posts are left alone again.
            await admin(fake, "qabot disable", channel_id=post_id)
            later = await fake.forum_post("Later", "Anyone here?")
            await fake.message("Hello?", channel_id=post_id)
            await asyncio.sleep(0.3)
            assert fake.sent_in(int(later["id"])) == [] and len(fake.sent_in(post_id)) == 2

    run(body())


def test_follow_ups_in_a_forum_post_carry_the_history(tmp_path):
    library = scoped_library(tmp_path)

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "alpha", "where": "server"})
            post = await fake.forum_post("Meetings", "When does the club meet?")
            await fake.wait_for(lambda: fake.sent_in(int(post["id"])), 5, "the answer")
            await fake.message("And where?", channel_id=int(post["id"]))
            await fake.wait_for(lambda: len(fake.sent_in(int(post["id"]))) == 2, 5, "the follow-up")

    run(body())
    assert library.qa("alpha").histories == [[], [Turn("When does the club meet?", "From alpha [1].")]]
