"""Answer → Discord messages: every payload within Discord's limits, markers and citations never cut."""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from bot.discord_bot.render import (
    DESCRIPTION_MAX, Message, clip, pack, render_answer, short_quote, split_text,
)
from bot.schema import REFUSAL_TEXT, Answer, Citation

sys.path.insert(0, str(Path(__file__).parent))
from fake_discord import message_errors  # noqa: E402  (the same limits the fake Discord enforces)

MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


def cite(n: int, quote: str = "The station will be deorbited in 2030.", **kw) -> Citation:
    fields = dict(source="docs/iss.txt", title=f"Title {n}", section="History", page=3, quote=quote,
                  start=0, end=len(quote), score=0.5)
    fields.update(kw)
    return Citation(n=n, **fields)


def assert_within_limits(messages: list[Message]) -> None:
    for m in messages:
        payload = {"embeds": [e.to_dict() for e in m.embeds]}
        assert message_errors(payload) is None, message_errors(payload)
        assert 1 <= len(m.embeds) <= 10 and m.chars <= 6000


def descriptions(messages: list[Message]) -> list[str]:
    return [e.description for m in messages for e in m.embeds if e.description]


def test_short_answer_is_one_message_with_numbered_sources():
    answer = Answer(question="When?", text="In 2030 [1], says NASA [2].", refused=False,
                    citations=[cite(2, section=None, page=None), cite(1)], answerer="llm:openai:gpt")
    (message,) = render_answer(answer)
    text, sources = message.embeds
    assert (text.title, text.description) == ("When?", "In 2030 [1], says NASA [2].")
    assert sources.title == "Sources"
    assert [f.name for f in sources.fields] == ["[1] Title 1", "[2] Title 2"]
    assert sources.fields[0].value == "History · p. 3 · `docs/iss.txt`\n> The station will be deorbited in 2030."
    assert sources.fields[1].value.startswith("`docs/iss.txt`\n> ")
    assert sources.footer.text == "Answered by llm:openai:gpt"


def test_refusal_shows_the_sentence_and_the_closest_passages():
    (message,) = render_answer(Answer(question="Capital of Mars?", text=REFUSAL_TEXT, refused=True,
                                      citations=[cite(1)]))
    assert message.embeds[0].title == "No answer found: Capital of Mars?"
    assert message.embeds[0].description == REFUSAL_TEXT
    assert message.embeds[1].title == "Closest passages"
    (bare,) = render_answer(Answer(question="?", text=REFUSAL_TEXT, refused=True))
    assert len(bare.embeds) == 1


def test_understood_as_footer_for_condensed_follow_ups():
    answer = Answer(question="And why?", text="Costs [1].", refused=False, citations=[cite(1)],
                    standalone_question="Why is Russia leaving the ISS?")
    footer = render_answer(answer)[-1].embeds[-1].footer.text
    assert footer.startswith("Understood as: Why is Russia leaving the ISS?")


def test_long_answer_with_many_citations_is_split_within_limits():
    text = " ".join(f"Point {i} is explained here in some detail [{i % 60 + 1}]." for i in range(700))
    long_quote = "Lorem ipsum *dolor* sit_amet " * 200
    cites = [cite(i, long_quote, title="T" * 400, section="S" * 2000, source="x/" * 300, span_start=50,
                  span_end=90) for i in range(1, 61)]
    messages = render_answer(Answer(question="Q" * 500, text=text, refused=False, citations=cites))
    assert len(messages) > 3
    assert_within_limits(messages)
    assert len(messages[0].embeds[0].title) <= 256
    # The text survives whole, in order, every marker intact.
    assert " ".join(" ".join(descriptions(messages)).split()) == text
    assert sum((MARKER.findall(d) for d in descriptions(messages)), []) == MARKER.findall(text)
    # Every citation is in one whole field, in order; passages of the one document share fields.
    fields = [f for m in messages for e in m.embeds for f in e.fields]
    numbers = [[int(n) for n in re.match(r"\[([\d, ]+)\] T", f.name).group(1).split(", ")] for f in fields]
    assert sum(numbers, []) == list(range(1, 61))
    assert all(f.value.count("**[") == len(ns) for f, ns in zip(fields, numbers))
    assert all(len(e.fields) <= 25 for m in messages for e in m.embeds)


@pytest.mark.parametrize("seed", range(25))
def test_split_text_never_cuts_a_marker(seed):
    rng = random.Random(seed)
    words = []
    for _ in range(rng.randint(200, 3000)):
        r = rng.random()
        if r < 0.2:
            words.append(f"[{rng.randint(1, 120)}]")
        elif r < 0.25:
            words.append(f"[{rng.randint(1, 9)}, {rng.randint(10, 99)}]")
        elif r < 0.3:
            words.append(rng.choice([".", "!\n", "\n\n", ";"]))
        else:
            words.append("x" * rng.randint(1, 12))
    text = rng.choice(["", " "]).join(words)  # sometimes no spaces at all
    limit = rng.choice([50, 200, 1000, DESCRIPTION_MAX])
    pieces = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())
    assert sum((MARKER.findall(p) for p in pieces), []) == MARKER.findall(text)


def test_split_prefers_sentence_ends_and_keeps_markers_with_their_sentence():
    text = "First sentence is here [1]. " * 10 + "Second part [2]."
    pieces = split_text(text, 100)
    assert all(p.endswith(("[1].", "[2].")) for p in pieces)


def test_short_quote_bolds_the_span_and_escapes_markdown():
    quote = "a_b " * 100 + "THE ANSWER IS 42 " + "c*d " * 100
    c = cite(1, quote, span_start=400, span_end=416)
    q = short_quote(c)
    assert "**THE ANSWER IS 42**" in q
    assert q.startswith("…") and q.endswith("…")
    assert "a\\_b" in q and "c\\*d" in q
    assert len(q) < 700
    assert short_quote(cite(1, "short one")) == "short one"


def test_clip_and_pack():
    assert clip("word " * 100, 20).endswith("…") and len(clip("word " * 100, 20)) <= 20
    assert clip("short", 20) == "short"
    import discord

    embeds = [discord.Embed(description="x" * 100) for _ in range(11)]
    assert [len(m.embeds) for m in pack(embeds)] == [10, 1]
    big = [discord.Embed(description="x" * 4000) for _ in range(3)]
    assert [len(m.embeds) for m in pack(big)] == [1, 1, 1]


GUIDE = """# Rover guide

## Battery

The battery lasts **14 hours** on a charge. Charging takes `6 hours` with the [charger](https://x.org/c).

## Wheels

Each wheel has its own motor.
"""


def span_of(quote: str, first: str, last: str) -> dict:
    start = quote.index(first)
    return dict(span_start=start, span_end=quote.index(last, start) + len(last))


def test_passages_of_one_document_share_one_field_under_its_title():
    guide = dict(source="guide.md", title="Rover guide", section="Battery", page=None)
    answer = Answer(question="Battery?", text="14 hours [1]. 6 hours [2]. Motors [3].", refused=False, citations=[
        cite(2, GUIDE, **guide, **span_of(GUIDE, "Charging", "c).")),
        cite(1, GUIDE, **guide, **span_of(GUIDE, "The battery", "charge.")),
        cite(3, "Each wheel has its own motor.", section=None, page=None),
    ])
    (message,) = render_answer(answer)
    sources = message.embeds[1]
    assert [f.name for f in sources.fields] == ["[1, 2] Rover guide", "[3] Title 3"]
    assert sources.fields[0].value == (
        "`guide.md`\n"
        "**[1]** Battery\n> **The battery lasts 14 hours on a charge.** Charging takes 6 hours with the charger.\n"
        "**[2]** Battery\n> The battery lasts 14 hours on a charge. **Charging takes 6 hours with the charger.**")
    assert sources.fields[1].value == "`docs/iss.txt`\n> Each wheel has its own motor."


def test_short_quote_is_prose_cut_between_words_and_never_glues_a_heading():
    words = [f"w{i}" for i in range(300)]
    quote = " ".join(f"**{w}**" if i % 7 == 0 else f"`{w}`" if i % 5 == 0 else w for i, w in enumerate(words))
    for at in (0, 10, 150, 290):
        c = cite(1, quote, source="notes.md", **span_of(quote, words[at], words[at + 2]))
        q = short_quote(c)
        shown = q.replace("**", "").strip("…").split()
        assert "`" not in q and q.count("**") == 2  # only the span's bold
        assert set(shown) <= set(words), q  # whole words only
        assert shown[shown.index(words[at]):shown.index(words[at]) + 3] == words[at:at + 3]
        assert len(q) <= 310
    c = cite(1, GUIDE, source="guide.md", **span_of(GUIDE, "Each wheel", "motor."))
    assert short_quote(c) == "**Each wheel has its own motor.**"  # not "… Wheels Each wheel …"
    rst = "Old text here.\n\nBattery\n=======\n\nThe battery lasts 14 hours."
    c = cite(1, rst, source="guide.rst", **span_of(rst, "The battery", "hours."))
    assert short_quote(c) == "**The battery lasts 14 hours.**"
