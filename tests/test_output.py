"""What `ask` and `chat` print: sources grouped by document, quotes as prose cut at word
boundaries with the answering span kept right, no heading glued to a sentence, help texts
intact, and piped output neither wrapped nor padded."""
from __future__ import annotations

import io
import json
import random
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from bot.cli.main import cli
from bot.cli.terminal import QUOTE_CONTEXT, make_console, print_answer, print_sources, quote_text
from bot.quote import blocks, excerpt, plain_label, prose_of
from bot.schema import Answer, Citation

MARKDOWN = """\
# Rover Operations Guide

The rover is operated from the **mission control** room in Houston.

## Battery

The rover's battery lasts **about 14 hours** on a full charge. Charging takes `6 hours` with the \
[standard charger](https://example.com/charger "Charger") and longer in the cold.

## Wheels

> Note: never drive the rover in *reverse* on slopes over 20 degrees.

- The front wheels steer.
- The rear wheels are fixed.
"""

REST = """\
Encoding and decoding
=====================

.. module:: json
   :synopsis: Encode and decode the JSON format.

.. index:: single: JSON

Basic usage::

    >>> import json

.. function:: dumps(obj, *, indent=None)

   Serialize *obj* to a JSON formatted ``str`` using this table [#note]_ and
   :func:`json.loads` for the way back, see `the spec <https://json.org>`_.

   .. note::

      Keys in key/value pairs of JSON are always of the type :class:`str`.

   .. versionchanged:: 3.6
      All optional parameters are now keyword-only.

The keyword:`!break` statement ends the loop.
"""

MARKUP = re.compile(r"\*\*|`|^#|\]\(|\.\. |::|:\w+:`|_\]|\[#")


def citation(n: int, quote: str, source: str = "guide.md", title: str = "Rover Operations Guide",
             span: tuple[str, str] | None = None, **kw) -> Citation:
    """A citation of `quote`; `span` = (first words, last words) of the answering span in it."""
    span_start = span_end = None
    if span:
        span_start = quote.index(span[0])
        span_end = quote.index(span[1], span_start) + len(span[1])
    fields = dict(source=source, title=title, section=None, page=None, quote=quote, start=0, end=len(quote),
                  score=0.5, span_start=span_start, span_end=span_end)
    fields.update(kw)
    return Citation(n=n, **fields)


def shown_span(c: Citation) -> str:
    p = prose_of(c.quote, c.span_start, c.span_end, c.source)
    return " ".join(p.text[p.span[0]:p.span[1]].split())


def printed(answer: Answer, width: int = 100, full: bool = False) -> str:
    console = Console(file=io.StringIO(), width=width, highlight=False, color_system=None, soft_wrap=False)
    if full:
        print_sources(console, answer, full=True)
    else:
        print_answer(console, answer)
    return console.file.getvalue()


# --- 15: prose, not markup; the span stays on the right words ------------------------------------

def test_markdown_is_shown_as_prose_with_the_span_on_the_same_words():
    c = citation(1, MARKDOWN, span=("The rover's battery", "in the cold."))
    p = prose_of(c.quote, c.span_start, c.span_end, c.source)
    assert not MARKUP.search(p.text), p.text
    assert "standard charger" in p.text and "example.com" not in p.text
    assert shown_span(c) == ("The rover's battery lasts about 14 hours on a full charge. Charging takes 6 hours "
                             "with the standard charger and longer in the cold.")
    assert "Note: never drive the rover in reverse" in p.text and "• The front wheels steer." in p.text
    # The whole passage: headings on their own lines, never run into the paragraph after them.
    full = [(b.text, b.heading) for b in blocks(p)]
    assert ("Battery", True) in full and ("Wheels", True) in full
    assert full[0] == ("Rover Operations Guide", True)


def test_rest_is_shown_as_prose():
    c = citation(1, REST, source="library/json.rst.txt", title="json",
                 span=("Serialize", "the way back"))
    p = prose_of(c.quote, c.span_start, c.span_end, c.source)
    assert not MARKUP.search(p.text), p.text
    for gone in ("module", "synopsis", "index", "single: JSON", "=====", "#note", "https://json.org", "!break"):
        assert gone not in p.text, gone
    assert "Basic usage:" in p.text
    assert "Note: Keys in key/value pairs" in " ".join(p.text.split())
    assert "Changed in version 3.6: All optional parameters" in " ".join(p.text.split())
    assert "The break statement ends the loop." in p.text
    assert shown_span(c) == "Serialize obj to a JSON formatted str using this table and json.loads for the way back"
    # The signature and the title are headings: a window never glues them to the text after them.
    headings = [b.text for b in blocks(p) if b.heading]
    assert headings == ["Encoding and decoding", "dumps(obj, *, indent=None)"]
    assert plain_label(":mod:`json` --- **JSON** encoder", "json.rst") == "json --- JSON encoder"


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
WRAPS = [("**", "**"), ("`", "`"), ("``", "``"), ("*", "*"), ("_", "_"), ("[", "](https://x.org/a_b)"),
         (":func:`", "`"), ("", "")]


@pytest.mark.parametrize("seed", range(40))
def test_the_span_maps_through_any_markup(seed):
    """Random Markdown/reST around random words: the span shown is exactly the words of the raw
    span, whatever markup was stripped around and inside it."""
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(rng.randint(20, 80))]
    pieces, starts, ends = [], [], []
    offset = 0
    for i, word in enumerate(words):
        left, right = rng.choice(WRAPS) if rng.random() < 0.4 else ("", "")
        piece = f"{left}{word}{right}"
        starts.append(offset + len(left))
        ends.append(offset + len(left) + len(word))
        sep = rng.choice([" ", " ", " ", "\n", " "]) if i < len(words) - 1 else ""
        pieces.append(piece + sep)
        offset += len(piece) + len(sep)
    quote = "".join(pieces)
    a = rng.randrange(len(words))
    b = rng.randrange(a, len(words))
    span_start = starts[a] - rng.choice([0, 0, 1]) if starts[a] > 0 else 0  # sometimes on the markup itself
    p = prose_of(quote, span_start, ends[b], "notes.md")
    assert p.span is not None, quote
    assert p.text[p.span[0]:p.span[1]].split() == words[a:b + 1], quote
    ex = excerpt(p, 60)
    assert ex.text[ex.span[0]:ex.span[1]].split() == words[a:b + 1]


# --- 15: quotes cut at word boundaries ------------------------------------------------------------

LONG = " ".join(f"word{i:03d}" for i in range(400)) + "."


@pytest.mark.parametrize("span_at", [0, 37, 200, 399])
def test_excerpts_are_cut_between_words(span_at):
    words = LONG.rstrip(".").split()
    start = LONG.index(words[span_at])
    c = citation(1, LONG, source="notes.txt", span=(words[span_at], words[min(span_at + 3, 399)]))
    assert c.span_start == start
    for context in (7, 50, 161, 320):
        ex = excerpt(prose_of(c.quote, c.span_start, c.span_end, c.source), context)
        assert set(ex.text.rstrip(".").split()) <= set(words), ex.text  # only whole words
        assert ex.cut_before == (not ex.text.startswith("word000"))
        assert ex.cut_after == (not ex.text.endswith("word399."))
    # In the terminal and on Discord alike: "…" where cut, never half a word.
    shown = quote_text(c).plain
    inner = shown.strip("… ").rstrip(".").split()
    assert set(inner) <= set(words), shown
    assert shown.startswith("… ") == (start > QUOTE_CONTEXT // 2)


# --- 15: no heading glued onto the answering sentence ---------------------------------------------

@pytest.mark.parametrize("source,quote", [
    ("guide.md", "Some text before the heading about other things entirely.\n\n## Background\n\n"
                 "Russia has decided to leave the station after 2024. It will build its own."),
    ("notes.rst", "Some text before the heading about other things entirely.\n\nBackground\n----------\n\n"
                  "Russia has decided to leave the station after 2024. It will build its own."),
    ("page.html", "Some text before the heading about other things entirely.\nBackground\n"
                  "Russia has decided to leave the station after 2024. It will build its own."),
    ("news.txt", "Background\n\nRussia has decided to leave the station after 2024. It will build its own."),
])
def test_a_heading_is_never_glued_onto_the_sentence(source, quote):
    c = citation(1, quote, source=source, title="ISS", span=("Russia has decided", "after 2024."))
    for context in (20, 160, 320):
        ex = excerpt(prose_of(c.quote, c.span_start, c.span_end, c.source), context)
        assert "Background Russia" not in ex.text and "Background" not in ex.text, ex.text
        assert ex.text.startswith("Russia has decided")
    out = printed(Answer(question="q", text="After 2024 [1].", refused=False, citations=[c]))
    assert "Background Russia" not in " ".join(out.split())
    # The whole passage keeps the heading, on a line of its own.
    full = printed(Answer(question="q", text="x", refused=False, citations=[c]), full=True)
    assert re.search(r"^ +Background$", full, re.M), full


def test_a_span_that_starts_on_the_heading_starts_after_it():
    quote = "## Background\nRussia has decided to leave the station after 2024."
    c = citation(1, quote, span=("## Background", "after 2024."))
    assert shown_span(c) == "Russia has decided to leave the station after 2024."


# --- 15: passages of one document under one title -------------------------------------------------

def grouped_answer() -> Answer:
    return Answer(question="battery?", text="About 14 hours [1]. Charging takes 6 hours [2]. Slopes [3]. Later [4].",
                  refused=False, citations=[
                      citation(1, MARKDOWN, span=("The rover's battery", "full charge."), section="Battery"),
                      citation(2, MARKDOWN, span=("Charging takes", "cold."), section="Battery"),
                      citation(3, "The station is old. It will be deorbited in 2030.", source="iss.txt",
                               title="ISS plans", span=("It will", "2030."), page=2),
                      citation(4, MARKDOWN, span=("The rover is", "Houston.")),
                  ])


def test_terminal_sources_group_passages_of_one_document():
    out = printed(grouped_answer())
    lines = out.splitlines()
    sources = lines[lines.index("Sources") + 1:]
    assert sources == [
        "Rover Operations Guide  (guide.md)",
        "  [1] § Battery",
        "      The rover's battery lasts about 14 hours on a full charge. Charging takes 6 hours with the",
        "      standard charger and longer in the cold.",
        "  [2] § Battery",
        "      The rover's battery lasts about 14 hours on a full charge. Charging takes 6 hours with the",
        "      standard charger and longer in the cold.",
        "ISS plans  (iss.txt)",
        "  [3] p. 2",
        "      The station is old. It will be deorbited in 2030.",
        "Rover Operations Guide  (guide.md)",  # not consecutive with [1] and [2]: its own title again
        "  [4] The rover is operated from the mission control room in Houston.",
    ]
    # /sources: the whole passages, under the same titles.
    full = printed(grouped_answer(), full=True)
    assert full.count("Rover Operations Guide  (guide.md)") == 2 and full.count("ISS plans") == 1
    assert "      Battery\n      The rover's battery lasts" in full


def test_terminal_output_highlights_the_span_and_wraps_under_its_indent():
    console = Console(file=io.StringIO(), width=60, force_terminal=True, color_system="standard", highlight=False)
    print_answer(console, grouped_answer())
    raw = console.file.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    assert all(len(line) <= 60 and line == line.rstrip() for line in plain.splitlines())
    assert "\x1b[1;33mThe rover's battery lasts about 14 hours on a full" in raw  # the span, highlighted
    assert re.search(r"\x1b\[3m *Charging takes 6 hours", raw)  # the text after it, not
    body = [line for line in plain.splitlines() if line.startswith("      ")]
    assert len(body) >= 6  # quotes wrap under their own indentation, not at column 0


# --- 16: help texts ------------------------------------------------------------------------------

def help_text(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    return result.output


def test_ask_help_shows_its_example_on_one_line():
    text = help_text("ask")
    assert "    printf 'when?\\nwho?\\n' | qabot ask --json -\n" in text
    assert "\b" not in text
    assert "If the index is missing or the corpus changed, ask ingests first." in text


def test_chat_help_keeps_its_lines():
    text = help_text("chat")
    assert "\b" not in text
    lines = text.splitlines()
    assert "  Commands: /sources (full passages of the last answer), /reset (forget the" in lines
    assert "  Prompt history: $QABOT_HISTORY_FILE, default ~/.local/state/qabot/history." in lines


@pytest.mark.parametrize("command", [(), ("ingest",), ("stats",), ("eval",), ("discord",), ("feedback",)])
def test_no_help_text_has_control_characters(command):
    assert not re.search(r"[\x00-\x09\x0b-\x1f]", help_text(*command))


# --- 17: piped output ----------------------------------------------------------------------------

def test_piped_console_neither_wraps_nor_pads(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    console = make_console(io.StringIO())
    assert not console.is_terminal
    print_answer(console, grouped_answer())
    lines = console.file.getvalue().splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert ("      The rover's battery lasts about 14 hours on a full charge. Charging takes 6 hours with the "
            "standard charger and longer in the cold.") in lines


def test_ask_piped_is_one_line_per_paragraph_without_trailing_spaces(iss_index, monkeypatch):
    """`qabot ask "…" | cat`: stdout is not a terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    args = ["ask", "when will Russia leave the ISS?", "--corpus", str(iss_index.corpus), "--index", str(iss_index.index)]
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False).stdout)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == data["answer"] and len(lines[0]) > 80
    assert all(line == line.rstrip() for line in lines), [line for line in lines if line != line.rstrip()]
    assert "\x1b[" not in result.stdout
    assert lines[lines.index("Sources") + 1] == data["citations"][0]["title"] + "  (russia-iss-withdrawal.txt)"
