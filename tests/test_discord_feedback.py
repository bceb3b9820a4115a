"""The feedback loop end to end: 👎 asks for a reason (a modal), "Still need help?" hands the
question to people (a support channel, a role ping, never @everyone), and `qabot feedback
report` / `export --gold` turn what Discord users did into a review and gold set candidates."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.eval.gold import load_gold
from bot.feedback.command import feedback_command
from bot.schema import REFUSAL_TEXT, Answer

sys.path.insert(0, str(Path(__file__).parent))
from discord_harness import bot_on_fake_discord, citation  # noqa: E402
from fake_discord import CHANNEL_ID, OTHER_CHANNEL_ID, ROLE_ID  # noqa: E402


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def answer_or_refuse(question: str, history) -> Answer:
    if "mars" in question.lower():
        return Answer(question=question, text=REFUSAL_TEXT, refused=True, citations=[citation(1)])
    return Answer(question=question, text="Russia leaves after 2024 [1].", refused=False, citations=[citation(1)])


def buttons(payload: dict) -> list[dict]:
    return [b for row in payload.get("components") or [] for b in row["components"]]


def run(coro):
    return asyncio.run(coro)


def test_still_need_help_posts_in_the_support_channel_pinging_only_the_role(tmp_path):
    async def body():
        async with bot_on_fake_discord(answer_or_refuse, lambda: "", support_channel=OTHER_CHANNEL_ID,
                                       support_role=ROLE_ID) as (fake, bot):
            token = await fake.slash("ask", {"question": "@everyone what is the capital of Mars?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the answer")
            shown = fake.sent_for(token)[-1].message
            labels = [b.get("label") or b["emoji"]["name"] for b in buttons(shown)]
            assert labels == ["👍", "👎", "Still need help?"]
            click = await fake.click(shown, buttons(shown)[2]["custom_id"], user_id=4242)
            await fake.wait_for(lambda: fake.sent_in(OTHER_CHANNEL_ID), 5, "the hand-off")
            (handoff,) = fake.sent_in(OTHER_CHANNEL_ID)
            content = handoff.payload["content"]
            assert content.startswith(f"<@&{ROLE_ID}> <@4242> still needs help (it found no answer)")
            assert "@everyone what is the capital of Mars?" in content and shown["id"] in content
            mentions = handoff.payload["allowed_mentions"]
            assert mentions["parse"] == [] and mentions["roles"] == [ROLE_ID]  # no @everyone, no users
            await fake.wait_for(lambda: [s for s in fake.sent_for(click) if s.kind == "followup"], 5, "the reply")
            reply = [s for s in fake.sent_for(click) if s.kind == "followup"][0].payload
            assert reply["flags"] & 64 and f"<#{OTHER_CHANNEL_ID}>" in reply["content"]
            # Clicking again (anyone) does not ping the team twice.
            again = await fake.click(shown, buttons(shown)[2]["custom_id"], user_id=5)
            await fake.wait_for(lambda: fake.sent_for(again), 5, "the second reply")
            assert "already been passed on" in fake.sent_for(again)[0].payload["content"]
            assert len(fake.sent_in(OTHER_CHANNEL_ID)) == 1

    run(body())


def test_without_support_there_is_no_help_button_and_a_role_alone_is_pinged_in_place(tmp_path):
    async def body(**support):
        async with bot_on_fake_discord(answer_or_refuse, lambda: "", **support) as (fake, bot):
            token = await fake.slash("ask", {"question": "When will Russia leave?"})
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the answer")
            shown = fake.sent_for(token)[-1].message
            if not support:
                return len(buttons(shown)), None
            await fake.click(shown, buttons(shown)[2]["custom_id"], user_id=7)
            await fake.wait_for(lambda: fake.sent_in(CHANNEL_ID), 5, "the ping")
            return len(buttons(shown)), fake.sent_in(CHANNEL_ID)[0].payload

    assert run(body()) == (2, None)
    count, ping = run(body(support_role=ROLE_ID))
    assert count == 3 and ping["content"].startswith(f"<@&{ROLE_ID}> <@7> still needs help (its answer did not help)")


def test_report_and_gold_export_from_what_discord_users_did(tmp_path):
    db = tmp_path / "feedback.sqlite3"

    async def body():
        async with bot_on_fake_discord(answer_or_refuse, lambda: "", feedback_db=db) as (fake, bot):
            shown = {}
            for n, q in enumerate(("When will Russia leave?", "when will russia leave", "What is on Mars?",
                      "What is on mars", "What is on Mars??", "Who runs the ISS?")):
                payload_token = await fake.slash("ask", {"question": q}, user_id=100 + n)
                await fake.wait_for(lambda: fake.sent_for(payload_token), 5, "an answer")
                shown[q] = fake.sent_for(payload_token)[-1].message
            for q, user, reason in (("When will Russia leave?", 1, "It cites the 2019 plan"),
                                    ("when will russia leave", 2, ""), ("Who runs the ISS?", 3, "Wrong agency")):
                message = shown[q]
                click = await fake.click(message, buttons(message)[1]["custom_id"], user_id=user)
                await fake.wait_for(lambda: fake.interactions[click].modal, 5, "the modal")
                (field,) = fake.text_inputs(click)
                done = await fake.submit_modal(click, {field["custom_id"]: reason}, user_id=user)
                await fake.wait_for(lambda: fake.sent_for(done), 5, "the thanks")

    run(body())
    runner = CliRunner()
    result = runner.invoke(feedback_command, ["report", "--db", str(db)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("6 questions (3 different), 3 refused, 3 👎")
    most = lines[lines.index("Most asked") + 1:lines.index("Refused (no answer found)")]
    assert most[0].strip().startswith("3×  What is on Mars??") and most[1].strip().startswith("2×  when will russia")
    down = lines[lines.index("👎 (not helpful), with reasons") + 1:]
    assert down[0].strip() == "2×  when will russia leave" and down[1].strip() == "“It cites the 2019 plan”"
    assert "1×  Who runs the ISS?" in down[2] and "“Wrong agency”" in down[3]
    # `qabot feedback --db X report` is the same report.
    assert runner.invoke(feedback_command, ["--db", str(db), "report"]).output == result.output

    gold = tmp_path / "candidates.jsonl"
    result = runner.invoke(feedback_command, ["export", "--gold", str(gold), "--db", str(db)])
    assert result.exit_code == 0 and result.output.strip() == f"Wrote 3 gold candidates to {gold}"
    items = load_gold(gold)  # the gold set format, so a person completes it in place
    assert [(i["question"], i["why"], i["times"]) for i in items] == [
        ("when will russia leave", "down", 2), ("Who runs the ISS?", "down", 1), ("What is on Mars??", "refused", 3)]
    first = items[0]
    assert first["answers"] == [] and first["kind"] == "todo" and first["source"] == "iss.txt"
    assert first["answer_given"] == "Russia leaves after 2024 [1]." and first["reasons"] == ["It cites the 2019 plan"]
    assert json.loads(gold.read_text().splitlines()[2])["answer_given"] == REFUSAL_TEXT
    # Nothing older than --days counts: a window of 0.0864 s, which the last record (written a
    # moment ago, by the reason modal) could still fall inside on a fast run, so wait it out.
    time.sleep(0.2)
    assert "0 questions" in runner.invoke(feedback_command, ["report", "--db", str(db), "--days", "0.000001"]).output


def test_hand_offs_are_limited_per_user(tmp_path):
    async def body():
        async with bot_on_fake_discord(answer_or_refuse, lambda: "", support_role=ROLE_ID) as (fake, bot):
            replies = []
            for n in range(4):  # four answers, one user asking for help under each
                token = await fake.slash("ask", {"question": f"question {n}"}, user_id=100 + n)
                await fake.wait_for(lambda: fake.sent_for(token), 5, "the answer")
                shown = fake.sent_for(token)[-1].message
                click = await fake.click(shown, buttons(shown)[2]["custom_id"], user_id=9)
                await fake.wait_for(lambda: [s for s in fake.sent_for(click) if s.kind in ("callback", "followup")],
                                    5, "the reply")
                replies.append([s for s in fake.sent_for(click) if s.kind in ("callback", "followup")][0].payload)
            await asyncio.sleep(0.1)
            pings = [s for s in fake.sent_in(CHANNEL_ID) if s.payload["content"].startswith(f"<@&{ROLE_ID}>")]
            return replies, pings

    replies, pings = run(body())
    assert len(pings) == 3  # HANDOFF_LIMIT: 3 an hour per user
    assert "several times in the last hour" in replies[3]["content"] and replies[3]["flags"] & 64
