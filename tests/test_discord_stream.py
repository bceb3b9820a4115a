"""Streamed answers in Discord (issue #7): the real discord.py client against tests/fake_discord.py.

With an LLM the bot gets a `stream_fn` (text deltas, then one verified `Answer`). It posts the
first words as soon as they arrive, edits that message in place as the text grows — at most once
per 1.2 s (the fake answers 429 to anything faster) and never over 2000 characters — then
replaces it with the verified answer, rendered exactly like a non-streamed one.
"""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from bot.discord_bot.cogs.ask import ERROR_TEXT
from bot.errors import QuestionError as UserFacingError
from bot.discord_bot.render import render_answer
from bot.discord_bot.stream import EDIT_INTERVAL, LiveMessage, preview
from bot.feedback.votes import FeedbackStore
from bot.schema import Answer, Turn

sys.path.insert(0, str(Path(__file__).parent))
from discord_harness import bot_on_fake_discord, citation  # noqa: E402
from fake_discord import APP_ID, BOT_ID, CHANNEL_ID, TOKEN, FakeDiscord  # noqa: E402

NO_PINGS = {"parse": []}
TOLERANCE = 0.02  # seconds of timer jitter allowed when checking the edit interval


def llm_answer(question: str) -> Answer:
    return Answer(question=question, text="Russia leaves after 2024 [1]. NASA plans to deorbit it [2].",
                  refused=False, citations=[citation(1), citation(2, "NASA will deorbit the ISS in 2030.")],
                  answerer="llm:fake:model")


def extractive_answer(question: str) -> Answer:
    return Answer(question=question, text="After 2024 — Russia will leave the station after 2024 [1].",
                  refused=False, citations=[citation(1)], answerer="extractive")


def long_answer(question: str, n: int = 30) -> Answer:
    sentences = [f"Sentence {i} explains one more detail of the withdrawal plans at considerable length, "
                 f"with enough words to make the answer long [{i % n + 1}]." for i in range(90)]
    quote = "The agency said the station " + "would continue operating with partners " * 60
    cites = [citation(i, quote, title=f"A long document title {i} " + "x" * 200, page=i, span_start=100,
                      span_end=160) for i in range(1, n + 1)]
    return Answer(question=question, text=" ".join(sentences), refused=False, citations=cites,
                  answerer="llm:fake:model")


DELTAS = ["Russia ", "leaves ", "the ISS ", "after 2024 [1]. ", "NASA plans ", "to deorbit it [2] ", "and more."]


class Streamer:
    """A fake stream_fn: yields `deltas` with `pause` s between them (blocking, like the LLM), then
    `final(question)`; or raises `fail` after the deltas."""

    def __init__(self, deltas=DELTAS, final=llm_answer, pause=0.3, fail: Exception | None = None):
        self.deltas, self.final, self.pause, self.fail = list(deltas), final, pause, fail
        self.calls: list[tuple[str, list[Turn]]] = []
        self.threads: list[threading.Thread] = []
        self.closed = False

    def __call__(self, question: str, history: list[Turn]):
        self.calls.append((question, list(history)))
        self.threads.append(threading.current_thread())
        try:
            for delta in self.deltas:
                time.sleep(self.pause)
                yield delta
            if self.fail is not None:
                raise self.fail
            yield self.final(question)
        finally:
            self.closed = True


def no_answer_fn(question, history):
    raise AssertionError("answer_fn must not be called when the bot streams")


def running(stream_fn, answer_fn=no_answer_fn, **config):
    """The fake Discord (edits faster than 1.2 s refused) and the bot with `stream_fn`; on exit,
    nothing may have been rejected."""
    return bot_on_fake_discord(answer_fn, lambda: "reindexed", stream_fn=stream_fn,
                               fake_options={"edit_interval": EDIT_INTERVAL}, **config)


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def run(coro):
    return asyncio.run(coro)


def rendered(answer: Answer) -> list[list[dict]]:
    """The embeds of each message a non-streamed answer is sent as."""
    return [[e.to_dict() for e in m.embeds] for m in render_answer(answer)]


def write_times(fake: FakeDiscord, message: dict) -> list[float]:
    """When the message was created and each time it was edited (as the fake received them)."""
    created = next(s.at for s in fake.sent if s.message["id"] == message["id"])
    return [created, *(e.at for e in fake.edits_of(message["id"]))]


def message_content_at_creation(fake: FakeDiscord, message: dict) -> str:
    return next(s.payload["content"] for s in fake.sent if s.message["id"] == message["id"])


def check_streamed(fake: FakeDiscord, message: dict, answer: Answer, deltas: list[str]) -> list[str]:
    """The streamed message's history: created with the first words, edited with growing
    partial text at most once per EDIT_INTERVAL, finally the verified answer as embeds."""
    text = "".join(deltas)
    first = message_content_at_creation(fake, message)
    edits = fake.edits_of(message["id"])
    previews = [first, *(e.payload.get("content") for e in edits[:-1])]
    assert previews[0] and text.startswith(previews[0])
    assert len(previews) >= 2, "the message was never edited with partial text"
    for before, after in zip(previews, previews[1:]):
        assert len(after) > len(before) and text.startswith(after.rstrip("…"))  # growing, the streamed text
    assert all(len(p) <= 2000 for p in previews)
    times = write_times(fake, message)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= EDIT_INTERVAL - TOLERANCE, gaps
    final = edits[-1].payload
    assert final["content"] is None and final["allowed_mentions"] == NO_PINGS
    assert final["embeds"] == rendered(answer)[0]
    assert message["content"] == "" and message["embeds"] == rendered(answer)[0]  # what users see now
    return previews


# --- thread and /ask ------------------------------------------------------------------------


def test_mention_streams_into_one_message_then_shows_the_verified_answer(tmp_path):
    streamer = Streamer()
    db = tmp_path / "votes.sqlite3"

    async def body():
        async with running(streamer, feedback_db=db) as (fake, bot):
            question = await fake.message("When will Russia leave the ISS?", mention_bot=True)
            thread_id = int(question["id"])
            started = time.monotonic()
            await fake.wait_for(lambda: fake.sent_in(thread_id), 5, "the first words")
            first_words = time.monotonic() - started
            (sent,) = fake.sent_in(thread_id)
            assert sent.payload["content"] == "Russia" and not sent.payload.get("embeds")
            assert first_words < 1.0  # posted at the first delta, not at the end (~2.1 s)
            assert sent.payload["allowed_mentions"] == NO_PINGS
            await fake.wait_for(lambda: sent.message["embeds"], 8, "the verified answer")
            await asyncio.sleep(0.3)

            answer = llm_answer("When will Russia leave the ISS?")
            check_streamed(fake, sent.message, answer, DELTAS)
            assert len(fake.sent_in(thread_id)) == 1  # no second message for a short answer
            buttons = sent.message["components"][0]["components"]
            assert [b["emoji"]["name"] for b in buttons] == ["👍", "👎"]
            assert sent.message["embeds"][-1]["footer"]["text"] == "Answered by llm:fake:model"
            # The gateway kept beating while the blocking stream ran (in a worker thread).
            assert streamer.threads[0] is not threading.main_thread()
            beats = [t for t in fake.heartbeats if started < t < started + 2.0]
            assert len(beats) >= 4, beats

            # The votes work on the edited message.
            click = await fake.click(sent.message, buttons[0]["custom_id"], user_id=4242)
            await fake.wait_for(lambda: fake.sent_for(click), 5, "the vote acknowledgement")
            (vote,) = FeedbackStore(db).list()
            assert (vote.vote, vote.answer, vote.answerer) == ("up", answer.text, "llm:fake:model")

            # A follow-up in the thread is streamed too, with the verified (not the streamed) text as history.
            await fake.message("And who deorbits it?", channel_id=thread_id)
            second = lambda: fake.sent_in(thread_id)[1:]  # noqa: E731
            await fake.wait_for(lambda: second() and second()[0].message["embeds"], 8, "the second answer")
            assert streamer.calls[1] == ("And who deorbits it?", [Turn("When will Russia leave the ISS?", answer.text)])

    run(body())


def test_ask_streams_into_the_follow_up_then_shows_the_verified_answer():
    streamer = Streamer()

    async def body():
        async with running(streamer) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave the ISS?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the first words")
            callbacks = [r.json["type"] for r in fake.requests if r.path.endswith(f"/{token}/callback")]
            assert callbacks == [5]  # deferred ("thinking…") at once
            (sent,) = fake.sent_for(token)
            assert sent.kind == "followup" and sent.payload["content"] == "Russia"
            await fake.wait_for(lambda: sent.message["embeds"], 8, "the verified answer")
            await asyncio.sleep(0.3)
            check_streamed(fake, sent.message, llm_answer("When will Russia leave the ISS?"), DELTAS)
            patches = [r.path for r in fake.requests if r.method == "PATCH"]
            assert patches and set(patches) == {f"/webhooks/{APP_ID}/{token}/messages/{sent.message['id']}"}
            assert len(fake.sent_for(token)) == 1 and sent.message["components"]

    run(body())


def test_extractive_fallback_replaces_the_streamed_text():
    # The LLM wrote something that failed verification: its text goes, the extractive answer shows.
    deltas = ["Russia will build ", "a base on the Moon ", "with China [1]. ", "Soon."]
    streamer = Streamer(deltas, final=extractive_answer, pause=0.6)

    async def body():
        async with running(streamer) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave the ISS?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the first words")
            (sent,) = fake.sent_for(token)
            await fake.wait_for(lambda: sent.message["embeds"], 8, "the final answer")
            answer = extractive_answer("When will Russia leave the ISS?")
            check_streamed(fake, sent.message, answer, deltas)
            assert sent.message["embeds"][0]["description"] == answer.text
            assert "Moon" not in json.dumps(sent.message)
            assert sent.message["embeds"][-1]["footer"]["text"] == "Answered by extractive"

    run(body())


def test_long_stream_previews_within_2000_chars_and_long_answer_is_split():
    deltas = [f"Word{i} " * 40 for i in range(20)]  # ~5,000 characters, quickly
    streamer = Streamer(deltas, final=long_answer, pause=0.12)

    async def body():
        async with running(streamer) as (fake, bot):
            question = await fake.message("Tell me everything", mention_bot=True)
            thread_id = int(question["id"])
            await fake.wait_for(lambda: any(s.payload.get("components") for s in fake.sent_in(thread_id)), 10,
                                "the last part of the answer")
            first, *rest = fake.sent_in(thread_id)
            answer = long_answer("Tell me everything")
            messages = rendered(answer)
            assert len(messages) >= 2
            edits = fake.edits_of(first.message["id"])
            previews = [first.payload["content"]] + [e.payload["content"] for e in edits[:-1]]
            assert all(len(p) <= 2000 for p in previews)
            assert any(p.endswith("…") for p in previews)
            # The first message now holds the first part; the others follow, the votes under the last.
            assert first.message["content"] == "" and first.message["embeds"] == messages[0]
            assert [s.payload["embeds"] for s in rest] == messages[1:]
            assert not first.message["components"] and rest[-1].payload["components"]
            assert all(s.payload.get("message_reference") is None for s in rest)

    run(body())


def test_stream_without_text_sends_the_answer_like_before():
    # e.g. the LLM server failed at once: QA.stream yields only the extractive answer.
    streamer = Streamer([], final=extractive_answer)

    async def body():
        async with running(streamer) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave the ISS?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the answer")
            await asyncio.sleep(0.2)
            (sent,) = fake.sent_for(token)
            assert sent.payload["embeds"] == rendered(extractive_answer("When will Russia leave the ISS?"))[0]
            assert sent.payload["components"] and fake.edits == []

    run(body())


def test_errors_replace_the_streamed_text_or_are_sent():
    def failing(question, history):
        if question == "bad":
            raise UserFacingError("Please ask a shorter question.")
        yield from Streamer(["Russia ", "leaves "], fail=RuntimeError("LLM exploded"))(question, history)

    async def body():
        async with running(failing) as (fake, bot):
            bad = await fake.slash("ask", {"question": "bad"})
            await fake.wait_for(lambda: fake.sent_for(bad), 5, "the error")
            assert fake.sent_for(bad)[0].payload["content"] == "Please ask a shorter question."

            message = await fake.message("boom", mention_bot=True)
            thread_id = int(message["id"])
            await fake.wait_for(lambda: fake.sent_in(thread_id), 5, "the first words")
            (sent,) = fake.sent_in(thread_id)
            await fake.wait_for(lambda: sent.message["content"] == ERROR_TEXT, 5, "the error in place")
            assert "exploded" not in json.dumps(fake.edits_of(sent.message["id"])[-1].payload)

    run(body())


def test_bot_without_stream_fn_does_not_stream():
    calls = []

    def answer_fn(question, history):
        calls.append(question)
        return llm_answer(question)

    async def body():
        async with running(None, answer_fn) as (fake, bot):
            token = await fake.slash("ask", {"question": "When?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the answer")
            await asyncio.sleep(0.2)
            (sent,) = fake.sent_for(token)
            assert sent.payload["embeds"] == rendered(llm_answer("When?"))[0] and fake.edits == []
            assert calls == ["When?"]

    run(body())


# --- the pieces -----------------------------------------------------------------------------


def test_preview_is_cut_to_the_content_limit():
    assert preview("  short  ") == "short"
    long = preview("x" * 5000)
    assert len(long) == 2000 and long.endswith("…")


def test_abandoned_stream_is_closed_in_its_thread():
    # E.g. the bot shuts down mid-answer: the worker stops at its next item and closes the stream.
    streamer = Streamer(["a "] * 50, pause=0.05)

    class Sink:
        id = 1

        async def edit(self, **fields):
            return None

    async def body():
        created = asyncio.Event()

        async def create(text):
            created.set()
            return Sink()

        task = asyncio.create_task(LiveMessage(create).stream(streamer, "q", []))
        await asyncio.wait_for(created.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 2
        while not streamer.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert streamer.closed and streamer.threads[0] is not threading.main_thread()

    run(body())


def test_fake_discord_enforces_edit_rules():
    async def body():
        async with FakeDiscord(edit_interval=EDIT_INTERVAL) as fake:
            headers = {"Authorization": f"Bot {TOKEN}"}
            base = f"{fake.api_base}/channels/{CHANNEL_ID}/messages"
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(base, json={"content": "first"}) as r:
                    mid = (await r.json())["id"]
                async with http.patch(f"{base}/{mid}", json={"content": "too soon"}) as r:
                    assert r.status == 429 and r.headers["Via"] and (await r.json())["retry_after"] > 1
                fake.written[int(mid)] -= EDIT_INTERVAL
                async with http.patch(f"{base}/{mid}", json={"content": "x" * 2001}) as r:
                    assert r.status == 400 and (await r.json())["code"] == 50035
                async with http.patch(f"{base}/{mid}", json={"content": None, "embeds": []}) as r:
                    assert r.status == 400 and (await r.json())["code"] == 50006
                async with http.patch(f"{base}/{mid}", json={"embeds": [{"description": "d" * 4097}]}) as r:
                    assert r.status == 400 and (await r.json())["code"] == 50035
                async with http.patch(f"{base}/{mid}", json={"content": "second"}) as r:
                    assert r.status == 200 and (await r.json())["content"] == "second"
                assert [e.payload["content"] for e in fake.edits_of(mid)] == ["second"]
                user_message = await fake.message("hello")
                fake.written[int(user_message["id"])] = float("-inf")
                async with http.patch(f"{base}/{user_message['id']}", json={"content": "hijacked"}) as r:
                    assert r.status == 403 and (await r.json())["code"] == 50005
                async with http.patch(f"{base}/123", json={"content": "?"}) as r:
                    assert r.status == 404
                webhook = f"{fake.api_base}/webhooks/{APP_ID}/nope/messages/{mid}"
                async with http.patch(webhook, json={"content": "?"}) as r:
                    assert r.status == 404
            assert str(BOT_ID) == fake.messages[int(mid)]["author"]["id"]

    run(body())
