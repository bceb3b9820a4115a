"""The Discord bot end to end: the real discord.py client against the fake Discord in tests/fake_discord.py.

Each test starts the fake on a free 127.0.0.1 port and the unmodified bot with fake answer
functions; the fake rejects anything real Discord would reject (limits, late or double acks).
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import discord
import pytest

from bot.discord_bot.cogs.ask import ERROR_TEXT
from bot.config import DiscordConfig
from bot.discord_bot.client import QABot, apply_endpoints
from bot.errors import QuestionError as UserFacingError
from bot.config import parse_rate_limit
from bot.errors import SettingError
from bot.discord_bot.ratelimit import RateLimiter
from bot.feedback.votes import FeedbackStore
from bot.schema import REFUSAL_TEXT, Answer, Turn
sys.path.insert(0, str(Path(__file__).parent))
from discord_harness import bot_on_fake_discord, citation  # noqa: E402
from fake_discord import APP_ID, BOT_ROLE_ID, CHANNEL_ID, OTHER_CHANNEL_ID, ROLE_ID, TOKEN, FakeDiscord  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NO_PINGS = {"parse": []}


# --- fake answer functions ------------------------------------------------------------------


def short_answer(question: str) -> Answer:
    return Answer(question=question, text="Russia leaves after 2024 [1]. NASA plans to deorbit it [2].",
                  refused=False, citations=[citation(1), citation(2, "NASA will deorbit the ISS in 2030.")])


def long_answer(question: str, n: int = 40) -> Answer:
    sentences = [f"Sentence {i} explains one more detail of the withdrawal plans at considerable length, "
                 f"with enough words to make the answer long [{i % n + 1}]." for i in range(90)]
    quote = "The agency said the station " + "would continue operating with partners " * 60
    cites = [citation(i, quote, title=f"A very long document title {i} " + "x" * 300, section="S" * 400,
                      page=i, span_start=100, span_end=160) for i in range(1, n + 1)]
    return Answer(question=question, text=" ".join(sentences), refused=False, citations=cites)


class Answerer:
    """A fake answer_fn: records its calls and the thread each ran in; sleeps `delay` to look busy."""

    def __init__(self, make=short_answer, delay: float = 0.0):
        self.make, self.delay = make, delay
        self.calls: list[tuple[str, list[Turn]]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, question: str, history: list[Turn]) -> Answer:
        self.calls.append((question, list(history)))
        self.threads.append(threading.current_thread())
        if self.delay:
            time.sleep(self.delay)
        return self.make(question)


def running(answer_fn=None, reindex_fn=None, **config):
    """The fake Discord and the bot logged in to it; on exit, nothing may have been rejected."""
    return bot_on_fake_discord(answer_fn or Answerer(), reindex_fn or (lambda: "3 files indexed"), **config)


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def run(coro):
    return asyncio.run(coro)


def followups(fake: FakeDiscord, token: str):
    return [s for s in fake.sent_for(token) if s.kind == "followup"]


def message_bodies(fake: FakeDiscord) -> list[dict]:
    """Every message payload the bot sent, whatever the route."""
    bodies = []
    for r in fake.requests:
        if r.method not in ("POST", "PATCH") or not isinstance(r.json, dict):
            continue
        if r.path.endswith("/callback"):
            if r.json.get("type") in (4, 7):
                bodies.append(r.json["data"])
        elif "/messages" in r.path and not r.path.endswith("/threads") or r.path.startswith("/webhooks/"):
            bodies.append(r.json)
    return bodies


# --- login, commands ------------------------------------------------------------------------


def test_login_syncs_ask_and_reindex():
    async def body():
        async with running() as (fake, bot):
            assert fake.requests[0].path == "/users/@me"
            puts = fake.requests_to("PUT", "/applications/")
            assert len(puts) == 1
            commands = {c["name"]: c for c in puts[0].json}
            assert set(commands) == {"ask", "reindex", "qabot", "Add to qabot"}
            ask = commands["ask"]
            assert ask["description"] and ask["options"][0]["name"] == "question"
            assert ask["options"][0]["description"] and ask["options"][0]["required"]
            assert int(commands["reindex"]["default_member_permissions"]) == discord.Permissions(administrator=True).value
            assert commands["reindex"]["dm_permission"] is False
            assert fake.identify["intents"] & discord.Intents(message_content=True).value
            await fake.wait_for(lambda: len(fake.heartbeats) >= 2, 3, "heartbeats")

    run(body())


# --- /ask -----------------------------------------------------------------------------------


def test_ask_defers_then_follows_up():
    answerer = Answerer(delay=0.3)

    async def body():
        async with running(answerer) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave the ISS?"})
            await fake.wait_for(lambda: followups(fake, token), 5, "the follow-up")
            callbacks = [r for r in fake.requests if r.path.endswith(f"/{token}/callback")]
            assert [c.json["type"] for c in callbacks] == [5]  # deferred at once
            paths = [r.path for r in fake.requests]
            assert paths.index(callbacks[0].path) < paths.index(f"/webhooks/{APP_ID}/{token}")
            (sent,) = followups(fake, token)
            embeds = sent.payload["embeds"]
            assert embeds[0]["title"] == "When will Russia leave the ISS?"
            assert embeds[0]["description"].startswith("Russia leaves after 2024 [1].")
            sources = embeds[1]
            assert sources["title"] == "Sources"
            assert [f["name"] for f in sources["fields"]] == ["[1] ISS article 1", "[2] ISS article 2"]
            assert "Withdrawal" in sources["fields"][0]["value"] and "> Russia will leave" in sources["fields"][0]["value"]
            buttons = sent.payload["components"][0]["components"]
            assert [b["emoji"]["name"] for b in buttons] == ["👍", "👎"]
            assert answerer.calls == [("When will Russia leave the ISS?", [])]
            assert answerer.threads[0] is not threading.main_thread()

    run(body())


def test_refusal_shows_text_and_closest_passages():
    def refusal(question):
        return Answer(question=question, text=REFUSAL_TEXT, refused=True, citations=[citation(1)])

    async def body():
        async with running(Answerer(refusal)) as (fake, bot):
            token = await fake.slash("ask", {"question": "What is the capital of Mars?"})
            await fake.wait_for(lambda: followups(fake, token), 5, "the follow-up")
            embeds = followups(fake, token)[0].payload["embeds"]
            assert embeds[0]["title"].startswith("No answer found")
            assert embeds[0]["description"] == REFUSAL_TEXT
            assert embeds[1]["title"] == "Closest passages"

    run(body())


# --- mentions, threads, follow-ups, DMs -----------------------------------------------------


def test_mention_opens_thread_and_follow_up_gets_history():
    answerer = Answerer()

    async def body():
        async with running(answerer) as (fake, bot):
            question = await fake.message("When will Russia leave the ISS?", mention_bot=True)
            thread_id = int(question["id"])
            await fake.wait_for(lambda: fake.sent_in(thread_id), 5, "the answer in the thread")
            (create,) = fake.requests_to("POST", f"/channels/{CHANNEL_ID}/messages/{thread_id}/threads")
            assert create.json["name"] == "When will Russia leave the ISS?"
            assert answerer.calls == [("When will Russia leave the ISS?", [])]
            first_answer = short_answer("").text

            # A follow-up in the thread, without a mention, comes with the earlier Q/A.
            follow_up = await fake.message("And who deorbits it?", channel_id=thread_id)
            await fake.wait_for(lambda: len(fake.sent_in(thread_id)) >= 2, 5, "the follow-up answer")
            assert answerer.calls[1] == (
                "And who deorbits it?", [Turn("When will Russia leave the ISS?", first_answer)])
            reply = fake.sent_in(thread_id)[1].payload
            assert str(reply["message_reference"]["message_id"]) == follow_up["id"]

            # A third turn sees both earlier ones.
            await fake.message("Thanks, and when?", channel_id=thread_id)
            await fake.wait_for(lambda: len(answerer.calls) == 3, 5, "the third answer")
            assert [t.question for t in answerer.calls[2][1]] == [
                "When will Russia leave the ISS?", "And who deorbits it?"]

            # Ignored: a message without a mention outside the thread, and other bots' messages.
            await fake.message("just chatting", channel_id=CHANNEL_ID)
            await fake.message("I am a bot", channel_id=thread_id, bot=True)
            await asyncio.sleep(0.3)
            assert len(answerer.calls) == 3  # the bot's own (echoed) messages were ignored too
            assert fake.requests_to("POST", f"/channels/{CHANNEL_ID}/messages") == [create]

    run(body())


def test_quick_follow_ups_are_answered_in_order():
    answerer = Answerer(delay=0.1)

    async def body():
        async with running(answerer) as (fake, bot):
            first = await fake.message("q1", mention_bot=True)
            thread_id = int(first["id"])
            await fake.wait_for(lambda: fake.sent_in(thread_id), 5, "the first answer")
            for q in ("q2", "q3", "q4"):  # posted before the previous one is answered
                await fake.message(q, channel_id=thread_id)
            await fake.wait_for(lambda: len(answerer.calls) == 4, 5, "four answers")
            assert [[t.question for t in history] for _, history in answerer.calls] == [
                [], ["q1"], ["q1", "q2"], ["q1", "q2", "q3"]]

    run(body())


def test_conversation_history_survives_a_restart():
    """A follow-up after the bot restarted still comes with the earlier Q/A (stored on disk)."""
    first, second = Answerer(), Answerer()

    async def before():
        async with running(first) as (fake, bot):
            await fake.message("When will Russia leave?", dm=True, channel_id=555, user_id=77)
            await fake.wait_for(lambda: fake.sent_in(555), 5, "the DM answer")

    async def after():
        async with running(second) as (fake, bot):  # a new process: nothing in memory
            assert bot.get_cog("AskCog").conversations == {}
            await fake.message("Why?", dm=True, channel_id=555, user_id=77)
            await fake.wait_for(lambda: fake.sent_in(555), 5, "the answer after the restart")
            await fake.message("Who decided?", dm=True, channel_id=999, user_id=78)  # another conversation
            await fake.wait_for(lambda: fake.sent_in(999), 5, "the other DM's answer")

    run(before())
    run(after())
    assert second.calls == [("Why?", [Turn("When will Russia leave?", short_answer("").text)]),
                            ("Who decided?", [])]


def test_conversation_store_keeps_the_last_turns_and_forgets_old_conversations(tmp_path):
    from bot.feedback.conversations import ConversationStore

    store = ConversationStore(tmp_path / "c.sqlite3", keep=2)
    assert store.turns(1) == []
    for i in range(4):
        store.add(1, Turn(f"q{i}", f"a{i}"))
    store.add(2, Turn("other", "x"))
    assert ConversationStore(tmp_path / "c.sqlite3", keep=2).turns(1) == [Turn("q2", "a2"), Turn("q3", "a3")]
    # Opened again with a 0-day age limit: everything is old and goes.
    assert ConversationStore(tmp_path / "c.sqlite3", max_age_days=0).turns(2) == []


def test_direct_messages_answered_unless_disabled():
    async def body(answer_dms: bool) -> Answerer:
        answerer = Answerer()
        async with running(answerer, answer_dms=answer_dms) as (fake, bot):
            await fake.message("When will Russia leave?", dm=True, channel_id=555, user_id=77)
            if answer_dms:
                await fake.wait_for(lambda: fake.sent_in(555), 5, "the DM answer")
                await fake.message("Why?", dm=True, channel_id=555, user_id=77)
                await fake.wait_for(lambda: len(fake.sent_in(555)) >= 2, 5, "the second DM answer")
                assert answerer.calls[1][1] == [Turn("When will Russia leave?", short_answer("").text)]
            else:
                await asyncio.sleep(0.3)
                assert fake.sent_in(555) == []
        return answerer

    assert len(run(body(True)).calls) == 2
    assert run(body(False)).calls == []


def test_mention_of_the_bots_role_counts_as_a_mention():
    answerer = Answerer()

    async def body():
        async with running(answerer) as (fake, bot):
            message = await fake.message(f"<@&{BOT_ROLE_ID}> When will Russia leave?", mention_roles=[BOT_ROLE_ID])
            await fake.wait_for(lambda: fake.sent_in(int(message["id"])), 5, "the answer in the thread")
            assert answerer.calls == [("When will Russia leave?", [])]

    run(body())


def test_errors_are_reported_and_the_bot_carries_on():
    def flaky(question):
        if question == "bad":
            raise UserFacingError("Please ask a shorter question.")
        if question == "boom":
            raise RuntimeError("index exploded")
        return short_answer(question)

    async def body():
        async with running(Answerer(flaky)) as (fake, bot):
            tokens = [await fake.slash("ask", {"question": q}, user_id=i) for i, q in enumerate(["bad", "boom", "ok"])]
            await fake.wait_for(lambda: all(followups(fake, t) for t in tokens), 5, "three replies")
            bad, boom, ok = (followups(fake, t)[0].payload for t in tokens)
            assert bad["content"] == "Please ask a shorter question."
            assert boom["content"] == ERROR_TEXT and "exploded" not in boom["content"]
            assert ok["embeds"]
            message = await fake.message("boom", mention_bot=True, user_id=9)
            await fake.wait_for(lambda: fake.sent_in(int(message["id"])), 5, "the error in the thread")
            assert fake.sent_in(int(message["id"]))[0].payload["content"] == ERROR_TEXT

    run(body())


# --- limits ---------------------------------------------------------------------------------


def _check_split(sent, answer: Answer) -> None:
    payloads = [s.payload for s in sent]
    assert len(payloads) > 1
    for p in payloads:
        assert len(p["embeds"]) <= 10 and p["allowed_mentions"] == NO_PINGS
    assert all("components" not in p or not p["components"] for p in payloads[:-1])
    assert payloads[-1]["components"]  # the vote buttons, once, under the last part
    embeds = [e for p in payloads for e in p["embeds"]]
    text_embeds = [e for e in embeds if not e.get("fields")]
    descriptions = [e["description"] for e in text_embeds if e.get("description")]
    assert " ".join(" ".join(descriptions).split()) == " ".join(answer.text.split())
    markers = re.compile(r"\[\d+\]")
    assert sum((markers.findall(d) for d in descriptions), []) == markers.findall(answer.text)
    names = [f["name"] for e in embeds for f in e.get("fields", [])]
    assert [int(re.match(r"\[(\d+)\] ", n).group(1)) for n in names] == [c.n for c in answer.citations]


def test_long_answer_is_split_within_limits():
    async def body():
        async with running(Answerer(long_answer)) as (fake, bot):
            token = await fake.slash("ask", {"question": "Tell me everything"})
            await fake.wait_for(lambda: len(followups(fake, token)) >= 3, 5, "the follow-ups")
            await asyncio.sleep(0.2)
            _check_split(followups(fake, token), long_answer("Tell me everything"))

            question = await fake.message("Tell me everything", mention_bot=True, user_id=5)
            thread_id = int(question["id"])
            await fake.wait_for(lambda: any(s.payload.get("components") for s in fake.sent_in(thread_id)), 5,
                                "the last part in the thread")
            _check_split(fake.sent_in(thread_id), long_answer("Tell me everything"))

    run(body())


def test_mass_mentions_never_ping():
    async def body():
        async with running() as (fake, bot):
            q = f"@everyone @here <@&{ROLE_ID}> when does Russia leave?"
            token = await fake.slash("ask", {"question": q})
            await fake.wait_for(lambda: followups(fake, token), 5, "the follow-up")
            message = await fake.message(q, mention_bot=True, mention_roles=[ROLE_ID])
            await fake.wait_for(lambda: fake.sent_in(int(message["id"])), 5, "the answer in the thread")
            await fake.message("", mention_bot=True)  # empty question: a short help reply
            await fake.wait_for(lambda: len(fake.sent_in(CHANNEL_ID)) == 1, 5, "the help reply")
            sent = followups(fake, token)[-1].message
            vote = await fake.click(sent, sent["components"][0]["components"][0]["custom_id"])
            await fake.wait_for(lambda: fake.sent_for(vote), 5, "the vote acknowledgement")
            bodies = message_bodies(fake)
            assert len(bodies) >= 4
            assert all(b.get("allowed_mentions") == NO_PINGS for b in bodies), bodies

    run(body())


# --- rate limit, allowlist ------------------------------------------------------------------


def test_rate_limit_politely_refuses_the_sixth_question():
    answerer = Answerer()

    async def body():
        async with running(answerer, rate_limit=(5, 60.0)) as (fake, bot):
            tokens = [await fake.slash("ask", {"question": f"question {i}"}, user_id=7) for i in range(6)]
            await fake.wait_for(lambda: all(fake.sent_for(t) for t in tokens), 5, "all six replies")
            assert len(answerer.calls) == 5
            sixth = [r.json for r in fake.requests if r.path.endswith(f"/{tokens[5]}/callback")]
            assert sixth[0]["type"] == 4 and sixth[0]["data"]["flags"] & 64  # ephemeral
            assert "please wait" in sixth[0]["data"]["content"]
            # Another user is not affected.
            other = await fake.slash("ask", {"question": "mine"}, user_id=8)
            await fake.wait_for(lambda: followups(fake, other), 5, "the other user's answer")

            # In a thread: a short normal reply.
            first = await fake.message("q0", mention_bot=True, user_id=9)
            thread_id = int(first["id"])
            await fake.wait_for(lambda: fake.sent_in(thread_id), 5, "the first answer in the thread")
            for i in range(1, 6):
                await fake.message(f"q{i}", channel_id=thread_id, user_id=9)
            await fake.wait_for(lambda: any("please wait" in (s.payload.get("content") or "")
                                            for s in fake.sent_in(thread_id)), 5, "the slow-down reply")
            await fake.wait_for(lambda: len(answerer.calls) == 11, 5, "five answers in the thread")
            await asyncio.sleep(0.2)
            assert len(answerer.calls) == 11

    run(body())


def test_allowlist_ignores_other_channels_and_guilds():
    answerer = Answerer()

    async def body():
        async with running(answerer, allowed_channels=frozenset({CHANNEL_ID})) as (fake, bot):
            await fake.message("outside?", mention_bot=True, channel_id=OTHER_CHANNEL_ID)
            token = await fake.slash("ask", {"question": "outside?"}, channel_id=OTHER_CHANNEL_ID)
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the not-enabled reply")
            (reply,) = fake.sent_for(token)
            assert reply.kind == "callback" and reply.payload["flags"] & 64
            await asyncio.sleep(0.2)
            assert answerer.calls == []
            assert fake.requests_to("POST", f"/channels/{OTHER_CHANNEL_ID}") == []
            inside = await fake.message("inside?", mention_bot=True, channel_id=CHANNEL_ID)
            await fake.wait_for(lambda: fake.sent_in(int(inside["id"])), 5, "the answer inside")
            assert answerer.calls == [("inside?", [])]
        async with running(answerer, allowed_guilds=frozenset({12345})) as (fake, bot):
            await fake.message("wrong guild?", mention_bot=True)
            token = await fake.slash("ask", {"question": "wrong guild?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the not-enabled reply")
            await asyncio.sleep(0.2)
            assert len(answerer.calls) == 1

    run(body())


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(5, 60, clock=lambda: now[0])
    assert [limiter.hit(1) for _ in range(5)] == [0.0] * 5
    assert limiter.hit(1) == pytest.approx(60.0)
    assert limiter.hit(2) == 0.0
    now[0] = 30.0
    assert limiter.hit(1) == pytest.approx(30.0)
    now[0] = 60.0
    assert limiter.hit(1) == 0.0
    assert parse_rate_limit("5/60") == (5, 60.0) and parse_rate_limit("0") == (0, 0.0)
    assert RateLimiter(0, 0).hit(1) == 0.0
    with pytest.raises(SettingError):
        parse_rate_limit("five per minute")


def test_config_from_env():
    cfg = DiscordConfig.from_env({})
    assert (cfg.allowed_guilds, cfg.allowed_channels, cfg.answer_dms, cfg.rate_limit) == (
        frozenset(), frozenset(), True, (5, 60.0))
    assert cfg.api_base is None and str(cfg.feedback_db).endswith("index/feedback.sqlite3")
    cfg = DiscordConfig.from_env({
        "QABOT_ALLOWED_GUILDS": "1, 2", "QABOT_ALLOWED_CHANNELS": "3", "QABOT_DISCORD_DMS": "0",
        "QABOT_RATE_LIMIT": "2/10", "QABOT_FEEDBACK_DB": "/tmp/f.db", "DISCORD_API_BASE": "http://x/api/v10",
    })
    assert (cfg.allowed_guilds, cfg.allowed_channels, cfg.answer_dms, cfg.rate_limit) == (
        frozenset({1, 2}), frozenset({3}), False, (2, 10.0))
    assert cfg.allows(1, 3) and cfg.allows(2, 99, parent_id=3)
    assert not cfg.allows(1, 4) and not cfg.allows(5, 3) and not cfg.allows(None, None)
    with pytest.raises(SettingError):
        DiscordConfig.from_env({"QABOT_ALLOWED_GUILDS": "general"})


def test_missing_message_content_intent_is_reported():
    async def body():
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        async with FakeDiscord(allow_message_content=False) as fake:
            cfg = DiscordConfig(api_base=fake.api_base, gateway_url=fake.gateway_url, guild_ready_timeout=0.05)
            apply_endpoints(cfg)
            try:
                async with QABot(Answerer(), lambda: "", cfg) as bot:
                    with pytest.raises(discord.PrivilegedIntentsRequired):
                        await asyncio.wait_for(bot.start(TOKEN), 10)
            finally:
                discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    run(body())


# --- feedback, reindex ----------------------------------------------------------------------


def test_vote_is_recorded(tmp_path):
    db = tmp_path / "votes.sqlite3"

    async def body():
        async with running(feedback_db=db) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave?"})
            await fake.wait_for(lambda: followups(fake, token), 5, "the answer")
            message = followups(fake, token)[-1].message
            up, down = (b["custom_id"] for b in message["components"][0]["components"])
            click = await fake.click(message, up, user_id=4242)
            await fake.wait_for(lambda: fake.sent_for(click), 5, "the acknowledgement")
            (ack,) = fake.sent_for(click)
            assert ack.kind == "callback" and ack.payload["flags"] & 64 and "Thanks" in ack.payload["content"]
            (vote,) = FeedbackStore(db).list()
            assert (vote.user_id, vote.vote, vote.question) == ("4242", "up", "When will Russia leave?")
            assert vote.answer == short_answer("").text
            assert [s["n"] for s in vote.sources] == [1, 2] and vote.ref == f"discord:{message['id']}"
            # Changing one's mind replaces the vote; 👎 asks for an optional reason in a modal.
            click = await fake.click(message, down, user_id=4242)
            await fake.wait_for(lambda: fake.interactions[click].modal, 5, "the reason modal")
            assert [v.vote for v in FeedbackStore(db).list()] == ["down"]  # counted before any reason
            (reason_input,) = fake.text_inputs(click)
            assert reason_input["required"] is False
            submitted = await fake.submit_modal(click, {reason_input["custom_id"]: "  It quotes the\n2019 plan. "},
                                                user_id=4242)
            await fake.wait_for(lambda: fake.sent_for(submitted), 5, "the thanks")
            (thanks,) = fake.sent_for(submitted)
            assert thanks.payload["flags"] & 64 and "noted" in thanks.payload["content"]
            (vote,) = FeedbackStore(db).list()
            assert (vote.vote, vote.reason) == ("down", "It quotes the 2019 plan.")

    run(body())


def test_votes_still_count_after_a_restart(tmp_path):
    """The buttons carry only the answer's id; the answer is read from the store on a click."""
    db = tmp_path / "votes.sqlite3"
    shown = {}

    async def before():
        async with running(feedback_db=db) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave?"})
            await fake.wait_for(lambda: followups(fake, token), 5, "the answer")
            shown["message"] = followups(fake, token)[-1].message

    async def after():
        async with running(feedback_db=db) as (fake, bot):  # a new process: no views in memory
            message = shown["message"]
            up, down = (b["custom_id"] for b in message["components"][0]["components"])
            click = await fake.click(message, down, user_id=7)
            await fake.wait_for(lambda: fake.interactions[click].modal, 5, "the reason modal")
            # Once the stored answer has expired, a click says so instead of failing.
            with sqlite3.connect(db) as conn:
                conn.execute("DELETE FROM answers")
            gone = await fake.click(message, up, user_id=7)
            await fake.wait_for(lambda: fake.sent_for(gone), 5, "the refusal")
            assert "too old" in fake.sent_for(gone)[0].payload["content"]

    run(before())
    run(after())
    (vote,) = FeedbackStore(db).list()
    assert (vote.user_id, vote.vote, vote.question, vote.answer) == ("7", "down", "When will Russia leave?",
                                                                    short_answer("").text)
    assert [s["n"] for s in vote.sources] == [1, 2]


def test_reindex_runs_in_a_thread_and_replies_ephemerally():
    ran_in = []

    def reindex():
        ran_in.append(threading.current_thread())
        time.sleep(0.2)
        return "3 files, 42 chunks"

    async def body():
        async with running(reindex_fn=reindex) as (fake, bot):
            token = await fake.slash("reindex", permissions=str(discord.Permissions(administrator=True).value))
            await fake.wait_for(lambda: followups(fake, token), 5, "the reindex summary")
            callback = next(r.json for r in fake.requests if r.path.endswith(f"/{token}/callback"))
            assert callback["type"] == 5 and callback["data"]["flags"] & 64
            (summary,) = followups(fake, token)
            assert summary.payload["content"] == "Reindexed. 3 files, 42 chunks"
            assert summary.payload["flags"] & 64
            assert ran_in and ran_in[0] is not threading.main_thread()

    run(body())


# --- load -----------------------------------------------------------------------------------


def test_fifty_concurrent_questions_keep_the_heartbeat():
    answerer = Answerer(delay=0.2)

    async def body():
        async with running(answerer) as (fake, bot):
            start = time.monotonic()
            tokens = [await fake.slash("ask", {"question": f"question {i}"}, user_id=1000 + i) for i in range(50)]
            await fake.wait_for(lambda: all(followups(fake, t) for t in tokens), 30, "50 answers")
            elapsed = time.monotonic() - start
            beats = [t for t in fake.heartbeats if t >= start]
            gaps = [b - a for a, b in zip([start] + beats, beats + [time.monotonic()])]
            print(f"\n50 concurrent questions answered in {elapsed:.2f} s; {len(beats)} heartbeats ACKed, "
                  f"longest gap {max(gaps):.2f} s, latency {bot.latency * 1000:.0f} ms")
            assert len(answerer.calls) == 50
            assert {q for q, _ in answerer.calls} == {f"question {i}" for i in range(50)}
            assert max(gaps) < 1.0  # heartbeat every 0.25 s: the event loop never stalled
            assert bot.latency < 0.5

    run(body())


# --- the command ----------------------------------------------------------------------------

COMMAND = "from bot.discord_bot.command import discord_command; discord_command()"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "DISCORD_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def test_missing_token_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-c", COMMAND], cwd=tmp_path, env=_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "DISCORD_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_rejected_token_from_dotenv_is_a_one_line_error(tmp_path):
    async def body():
        async with FakeDiscord() as fake:
            (tmp_path / ".env").write_text(f"DISCORD_TOKEN='not-the-token'\nDISCORD_API_BASE={fake.api_base}\n")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", COMMAND, cwd=tmp_path, env=_env(DISCORD_GATEWAY_URL=fake.gateway_url),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert fake.requests[0].path == "/users/@me"  # it did try, with the .env token
            return proc.returncode, out.decode(), err.decode()

    code, out, err = run(body())
    assert code == 2
    assert err.strip().count("\n") == 0 and "rejected the token" in err, err
    assert "not-the-token" not in out + err and "Traceback" not in err


def test_discord_command_answers_with_the_real_qa(tmp_path, iss_corpus):
    from bot.config import Settings
    from bot.ingest.pipeline import ingest

    index = tmp_path / "index"
    ingest(Settings.from_env(corpus=iss_corpus, index=index))

    async def body():
        async with FakeDiscord() as fake:
            env = _env(DISCORD_TOKEN=TOKEN, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url,
                       QABOT_CORPUS=str(iss_corpus), QABOT_INDEX=str(index),
                       QABOT_FEEDBACK_DB=str(tmp_path / "feedback.sqlite3"), HF_HUB_OFFLINE="1")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", COMMAND, cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                await fake.wait_for(lambda: fake.ready.is_set() and fake.commands or proc.returncode is not None,
                                    120, "the bot to log in")
                assert proc.returncode is None
                await asyncio.sleep(0.5)  # guild_ready_timeout before the bot handles events
                token = await fake.slash("ask", {"question": "When will Russia withdraw from the ISS?"})
                await fake.wait_for(lambda: followups(fake, token), 60, "the answer")
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), 30)
            assert fake.rejected == []
            assert [r.json["type"] for r in fake.requests if r.path.endswith(f"/{token}/callback")] == [5]
            first = followups(fake, token)[0].payload["embeds"][0]
            assert first["description"] and first["title"]
            print(f"\nreal QA over Discord: {first['description'][:300]!r}")
            assert TOKEN not in err.decode()
            return proc.returncode

    assert run(body()) == 0
