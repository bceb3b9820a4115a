"""Answer → Discord messages: embeds with the answer and its numbered sources, within Discord's limits.

Pure functions: no network, no client. The cogs send each returned `Message` as one Discord message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import discord

from bot.schema import Answer, Citation
from bot.text import CITATION_MARKER, one_line

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FIELDS_MAX = 25
EMBEDS_PER_MESSAGE = 10
EMBED_CHARS_PER_MESSAGE = 6000

QUOTE_CHARS = 300  # a "short quote" under each source
ANSWER_COLOUR = discord.Colour(0x5865F2)
REFUSAL_COLOUR = discord.Colour(0xE67E22)

# Preferred places to split a long answer, best first; a split goes right after the match,
# so a sentence keeps the markers that follow its full stop.
_BREAKS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"[.!?]['\")\]]*(?:\s*" + CITATION_MARKER.pattern + r")*\s+"),
    re.compile(r"[,;:]\s+"),
    re.compile(r"\s+"),
)


@dataclass
class Message:
    """One Discord message: up to 10 embeds, 6000 embed characters in total."""

    embeds: list[discord.Embed] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return sum(len(e) for e in self.embeds)


def clip(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` characters, ending in "…" if cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" \\") + "…"


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into pieces of at most `limit` characters at paragraph, sentence or word
    boundaries, never inside a `[n]` marker."""
    pieces: list[str] = []
    text = text.strip()
    while len(text) > limit:
        cut = _best_cut(text, limit)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def _best_cut(text: str, limit: int) -> int:
    window = text[: limit + 1]
    markers = [m.span() for m in CITATION_MARKER.finditer(text, 0, limit + 40)]

    def inside_marker(cut: int) -> bool:
        return any(start < cut < end for start, end in markers)

    for pattern in _BREAKS:
        ends = [
            m.end() for m in pattern.finditer(window)
            if limit // 4 < m.start() <= limit and not inside_marker(m.start()) and not inside_marker(m.end())
        ]
        if ends:
            # The break's trailing whitespace may run past the limit; the piece is right-stripped.
            return ends[-1]
    # No break at all (one enormous word): cut hard, but never through a marker.
    cut = limit
    for start, end in markers:
        if start < cut < end:
            cut = start
    return cut if cut > 0 else limit



def short_quote(c: Citation, limit: int = QUOTE_CHARS) -> str:
    """A window of at most ~`limit` characters of the quote around its answering span, the span in bold."""
    quote = c.quote
    s, e = c.span_start, c.span_end
    if s is None or e is None or not (0 <= s < e <= len(quote)):
        s, e = 0, 0
    if e - s > limit:  # the span alone is too long: show its beginning, unbolded
        return discord.utils.escape_markdown(clip(one_line(quote[s:]), limit))
    room = limit - (e - s)
    lo = max(0, s - room // 2)
    hi = min(len(quote), lo + limit)
    lo = max(0, min(lo, hi - limit))
    # Move the window's edges to word boundaries outside the span.
    if lo > 0:
        space = quote.find(" ", lo, s) if s > lo else -1
        lo = space + 1 if space != -1 else lo
    if hi < len(quote):
        space = quote.rfind(" ", e, hi)
        hi = space if space != -1 else hi
    esc = discord.utils.escape_markdown
    before, span, after = quote[lo:s], quote[s:e], quote[e:hi]
    text = esc(one_line(before))
    if span.strip():
        text += (" " if before[-1:].isspace() or span[:1].isspace() else "") + f"**{esc(one_line(span))}**"
        text += " " if after[:1].isspace() or span[-1:].isspace() else ""
    text += esc(one_line(after))
    text = text.strip()
    return ("…" if lo > 0 else "") + text + ("…" if hi < len(quote) else "")


def source_field(c: Citation) -> tuple[str, str]:
    """(name, value) of the embed field describing citation `c`."""
    name = clip(f"[{c.n}] {one_line(c.title) or c.source}", FIELD_NAME_MAX)
    where = [x for x in (one_line(c.section or ""), f"p. {c.page}" if c.page else "") if x]
    if c.source and c.source != c.title:
        where.append(f"`{clip(c.source.replace('`', ''), 120)}`")
    meta = clip(" · ".join(where), 300)
    quote = short_quote(c)
    value = "\n".join(x for x in (meta, f"> {quote}" if quote else "") if x) or "\u200b"
    return name, clip(value, FIELD_VALUE_MAX)


def render_answer(answer: Answer) -> list[Message]:
    """The messages that show `answer`: its text (with [n] markers), then its numbered sources.

    A refusal shows the refusal sentence and, if the answer carries any, the closest passages.
    """
    colour = REFUSAL_COLOUR if answer.refused else ANSWER_COLOUR
    embeds: list[discord.Embed] = []

    text = answer.text.strip() or "(empty answer)"
    for i, part in enumerate(split_text(text, DESCRIPTION_MAX)):
        embed = discord.Embed(description=part, colour=colour)
        if i == 0:
            title = one_line(answer.question) or "Answer"
            embed.title = clip(("No answer found: " if answer.refused else "") + title, TITLE_MAX)
        embeds.append(embed)

    heading = "Closest passages" if answer.refused else "Sources"
    sources: discord.Embed | None = None
    for c in sorted(answer.citations, key=lambda c: c.n):
        name, value = source_field(c)
        if sources is None or len(sources.fields) >= FIELDS_MAX or (
            len(sources) + len(name) + len(value) > EMBED_CHARS_PER_MESSAGE
        ):
            title = heading if sources is None else f"{heading} (continued)"
            sources = discord.Embed(title=title, colour=colour)
            embeds.append(sources)
        sources.add_field(name=name, value=value, inline=False)

    footer = _footer(answer)
    if footer:
        last = embeds[-1]
        if len(last) + len(footer) > EMBED_CHARS_PER_MESSAGE:
            last = discord.Embed(colour=colour)
            embeds.append(last)
        last.set_footer(text=footer)
    return pack(embeds)


def _footer(answer: Answer) -> str:
    parts = []
    if answer.standalone_question and answer.standalone_question.strip() != answer.question.strip():
        parts.append(f"Understood as: {one_line(answer.standalone_question)}")
    if answer.answerer:
        parts.append(f"Answered by {answer.answerer}")
    return clip(" · ".join(parts), 500)


def pack(embeds: list[discord.Embed]) -> list[Message]:
    """Group embeds, in order, into as few messages as the per-message limits allow."""
    messages: list[Message] = []
    for embed in embeds:
        if (
            not messages
            or len(messages[-1].embeds) >= EMBEDS_PER_MESSAGE
            or messages[-1].chars + len(embed) > EMBED_CHARS_PER_MESSAGE
        ):
            messages.append(Message())
        messages[-1].embeds.append(embed)
    return messages


def plain(text: str) -> str:
    """A short notice (errors, rate limit) as message content within the content limit."""
    return clip(text, CONTENT_MAX)
