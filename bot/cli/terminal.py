"""Answers for humans in a terminal (rich): used by `qabot ask` and `qabot chat`."""
from __future__ import annotations

import re
from typing import IO

from rich.console import Console
from rich.text import Text

from bot.schema import Answer, Citation
from bot.text import CITATION_MARKER

QUOTE_CONTEXT = 160  # characters of passage shown around the answer span in the short view


def make_console(file: IO[str] | None = None) -> Console:
    """The console `ask` and `chat` print to: colours and wrapping in a terminal; piped, plain
    text with one line per paragraph (no hard wrap at 80 columns)."""
    console = Console(highlight=False, file=file)
    console.soft_wrap = not console.is_terminal
    return console


def source_label(c: Citation) -> str:
    where = [c.source]
    if c.section:
        where.append(f"§ {c.section}")
    if c.page is not None:
        where.append(f"p. {c.page}")
    return " · ".join(where)


def quote_text(c: Citation, full: bool = False) -> Text:
    """The passage, with the answering span highlighted; trimmed around the span unless `full`."""
    quote = c.quote
    has_span = c.span_start is not None and c.span_end is not None and c.span_end > c.span_start
    start, end = (c.span_start, c.span_end) if has_span else (0, 0)
    lo, hi = 0, len(quote)
    if not full:
        lo = max(0, start - QUOTE_CONTEXT) if has_span else 0
        hi = min(len(quote), (end if has_span else 0) + (QUOTE_CONTEXT if has_span else 2 * QUOTE_CONTEXT))
    pieces = [(quote[lo:start], "italic"), (quote[start:end], "bold yellow"), (quote[max(end, lo):hi], "italic")]
    text = Text("… " if lo > 0 else "", style="dim")
    for piece, style in pieces:
        # Runs of whitespace become one space and none is added: "station." not "station .".
        piece = re.sub(r"\s+", " ", piece)
        if not text.plain or text.plain.endswith(" "):
            piece = piece.lstrip()
        if piece:
            text.append(piece, style=style)
    text.rstrip()
    if hi < len(quote):
        text.append(" …", style="dim")
    return text


_MARKER = re.compile(f"({CITATION_MARKER.pattern})")  # split() keeps the markers


def answer_text(answer: Answer) -> Text:
    text = Text()
    for part in _MARKER.split(answer.text):
        if _MARKER.fullmatch(part):
            text.append(part, style="bold cyan")
        else:
            text.append(part, style="bold" if not answer.refused else "bold red")
    return text


def print_answer(console: Console, answer: Answer, full_sources: bool = False) -> None:
    console.print(answer_text(answer))
    if answer.citations:
        heading = "Closest passages" if answer.refused else "Sources"
        console.print(Text(f"\n{heading}", style="underline"))
        print_sources(console, answer, full=full_sources)


def print_sources(console: Console, answer: Answer, full: bool = False) -> None:
    for c in answer.citations:
        line = Text()
        line.append(f"[{c.n}] ", style="bold cyan")
        line.append(c.title or c.source, style="bold")
        line.append(f"  ({source_label(c)})", style="dim")
        console.print(line)
        quote = quote_text(c, full=full)
        quote.pad_left(4)
        console.print(quote)
