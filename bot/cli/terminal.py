"""Answers for humans in a terminal (rich): used by `qabot ask` and `qabot chat`.

Sources are listed under their document's title: consecutive passages of one document share one
title line, each keeps its [n]. Quotes are prose (markup stripped, see `bot.quote`), cut at word
boundaries, with the answering span highlighted. In a terminal, long lines wrap under their own
indentation; piped (not a terminal), nothing is wrapped, and no line ends in spaces.
"""
from __future__ import annotations

import re
from typing import IO

from rich.console import Console
from rich.text import Text

from bot.quote import blocks, excerpt, plain_label, prose, source_groups
from bot.schema import Answer, Citation
from bot.text import CITATION_MARKER

QUOTE_CONTEXT = 320  # characters of passage shown around the answer span in the short view
INDENT = 2  # of a passage under its document's title
MARKER_STYLE = "bold cyan"
SPAN_STYLE = "bold yellow"


def make_console(file: IO[str] | None = None) -> Console:
    """The console `ask` and `chat` print to: colours and wrapping in a terminal; piped, plain
    text with one line per paragraph (no hard wrap at 80 columns)."""
    console = Console(highlight=False, file=file)
    console.soft_wrap = not console.is_terminal
    return console


def print_wrapped(console: Console, text: Text, indent: int = 0, hang: int | None = None) -> None:
    """`text` indented by `indent`; in a terminal wrapped at word boundaries with the following
    lines indented by `hang` (default: `indent`). No line ends in spaces."""
    hang = indent if hang is None else hang
    if console.soft_wrap:  # not a terminal: one line, as long as it is
        line = text.copy()
        line.rstrip()
        line.pad_left(indent)
        console.print(line)
        return
    for i, line in enumerate(text.wrap(console, max(console.width - hang, 20))):
        line.rstrip()
        line.pad_left(indent if i == 0 else hang)
        console.print(line, no_wrap=True, overflow="ignore", crop=False)


def location(c: Citation) -> str:
    """Where in its document a passage is: "§ Section · p. 3" (or "")."""
    where = []
    section = plain_label(c.section, c.source)
    if section:
        where.append(f"§ {section}")
    if c.page is not None:
        where.append(f"p. {c.page}")
    return " · ".join(where)


def _highlighted(text: str, span: tuple[int, int] | None, style: str = "italic") -> Text:
    out = Text()
    if span is None:
        out.append(text, style=style)
        return out
    s, e = span
    out.append(text[:s], style=style)
    out.append(text[s:e], style=SPAN_STYLE)
    out.append(text[e:], style=style)
    return out


def quote_text(c: Citation, full: bool = False) -> Text:
    """The passage as one line of prose around the answering span (highlighted), "…" where it
    is cut; with `full`, the whole passage, its paragraphs and headings on their own lines."""
    p = prose(c)
    if full:
        lines = []
        for block in blocks(p):
            lines.append(_highlighted(block.text, block.span, style="bold" if block.heading else "italic"))
        return Text("\n").join(lines)
    ex = excerpt(p, QUOTE_CONTEXT)
    text = Text()
    if ex.cut_before:
        text.append("… ", style="dim")
    text.append_text(_highlighted(ex.text, ex.span))
    if ex.cut_after:
        text.append(" …", style="dim")
    return text


_MARKER = re.compile(f"({CITATION_MARKER.pattern})")  # split() keeps the markers


def answer_text(answer: Answer) -> Text:
    text = Text()
    for part in _MARKER.split(answer.text):
        if _MARKER.fullmatch(part):
            text.append(part, style=MARKER_STYLE)
        else:
            text.append(part, style="bold" if not answer.refused else "bold red")
    return text


def print_answer(console: Console, answer: Answer, full_sources: bool = False, link=None) -> None:
    """`link` (bot.source_links.source_url with a template) gives each passage's public page."""
    print_wrapped(console, answer_text(answer))
    if answer.citations:
        heading = "Closest passages" if answer.refused else "Sources"
        console.print()
        console.print(Text(heading, style="underline"))
        print_sources(console, answer, full=full_sources, link=link)


def print_sources(console: Console, answer: Answer, full: bool = False, link=None) -> None:
    """The numbered passages under their documents' titles (see the module docstring), each
    followed by its public page where `link` gives one."""
    for group in source_groups(answer.citations):
        first = group[0]
        title = plain_label(first.title, first.source) or first.source
        head = Text().append(title, style="bold")
        if first.source and first.source != title:
            head.append(f"  ({first.source})", style="dim")
        print_wrapped(console, head, hang=INDENT)
        for c in group:
            marker = Text().append(f"[{c.n}] ", style=MARKER_STYLE)
            hang = INDENT + len(marker)
            where = location(c)
            if where or full:
                # The marker with the passage's place, and the passage below it.
                print_wrapped(console, marker.append(where, style="dim"), indent=INDENT, hang=hang)
                for line in quote_text(c, full=full).split("\n"):
                    print_wrapped(console, line, indent=hang)
            else:
                print_wrapped(console, marker.append_text(quote_text(c)), indent=INDENT, hang=hang)
            url = link(c) if link else None
            if url:
                print_wrapped(console, Text(url, style=f"dim link {url}"), indent=hang)
