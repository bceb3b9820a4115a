"""Answer → Discord messages: embeds with the answer and its numbered sources, within Discord's limits.

Pure functions: no network, no client. The cogs send each returned `Message` as one Discord message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import discord

from bot.quote import excerpt, plain_label, prose, source_groups
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
    """About `limit` characters of the quote, as prose (see `bot.quote`), around its answering
    span (in bold), cut at word boundaries with "…"; Markdown in the text itself is escaped."""
    esc = discord.utils.escape_markdown
    p = prose(c)
    span_len = p.span[1] - p.span[0] if p.span is not None else 0
    if span_len > limit:  # the span alone is too long: its beginning, unbolded
        ex = excerpt(p, 0, max_span=limit - 1)
        return esc(ex.text) + "…"
    ex = excerpt(p, limit - span_len)
    if ex.span is None:
        text = esc(ex.text)
    else:
        s, e = ex.span
        text = esc(ex.text[:s]) + f"**{esc(ex.text[s:e])}**" + esc(ex.text[e:])
    return ("…" if ex.cut_before else "") + text + ("…" if ex.cut_after else "")


LinkFn = Callable[[Citation], "str | None"]  # a citation's public page (bot.source_links.source_url)


def _where(c: Citation, with_source: bool, link: LinkFn | None = None) -> str:
    """The passage's section and page (and its file, if `with_source` and not the title); with a
    `link`, the section (or "page") links to the passage's public page."""
    where = [x for x in (plain_label(c.section, c.source), f"p. {c.page}" if c.page else "") if x]
    url = link(c) if link else None
    if url and len(url) <= 512:
        label = discord.utils.escape_markdown(clip(where[0] if where else "page", 120)).replace("]", "\\]")
        where = [f"[{label}]({url})"] + where[1:]
    if with_source and c.source and c.source != c.title and not url:
        where.append(f"`{clip(c.source.replace('`', ''), 120)}`")
    text = " · ".join(where)
    return text if len(text) <= 700 else clip(text.replace(f"({url})", ""), 300)


def _title(c: Citation) -> str:
    return plain_label(c.title, c.source) or c.source


def source_field(c: Citation, link: LinkFn | None = None) -> tuple[str, str]:
    """(name, value) of the embed field of a document cited once: `[n] Title`, then where in it
    and the quote."""
    name = clip(f"[{c.n}] {_title(c)}", FIELD_NAME_MAX)
    quote = short_quote(c)
    where = _where(c, with_source=True, link=link)
    value = "\n".join(x for x in (where, f"> {quote}" if quote else "") if x) or "\u200b"
    if len(value) > FIELD_VALUE_MAX and quote:  # keep the link whole: the quote gives way
        value = where + "\n" + clip(f"> {quote}", FIELD_VALUE_MAX - len(where) - 1)
    return name, clip(value, FIELD_VALUE_MAX)


def source_fields(citations: list[Citation], link: LinkFn | None = None) -> list[tuple[str, str]]:
    """The (name, value) embed fields of the sources, in [n] order: consecutive passages of one
    document share one field under its title (`[1, 2] Title`), each passage with its own [n];
    a group too long for one field goes on in the next, under the same title."""
    fields = []
    for group in source_groups(citations):
        if len(group) == 1:
            fields.append(source_field(group[0], link))
            continue
        first = group[0]
        head = f"`{clip(first.source.replace('`', ''), 120)}`" if first.source and first.source != first.title else ""
        room = FIELD_VALUE_MAX - len(head) - 1
        passages: list[tuple[int, str]] = []
        for c in group:
            quote = short_quote(c)
            lines = [f"**[{c.n}]** {_where(c, with_source=False, link=link)}".rstrip()] + ([f"> {quote}"] if quote else [])
            passages.append((c.n, clip("\n".join(lines), room)))
        # As many passages per field as fit.
        batch: list[tuple[int, str]] = []

        def add_field() -> None:
            numbers = ", ".join(str(n) for n, _ in batch)
            value = "\n".join(([head] if head else []) + [text for _, text in batch])
            fields.append((clip(f"[{numbers}] {_title(first)}", FIELD_NAME_MAX), clip(value, FIELD_VALUE_MAX)))
            batch.clear()

        for n, text in passages:
            if batch and len("\n".join(t for _, t in batch)) + 1 + len(text) > room:
                add_field()
            batch.append((n, text))
        add_field()
    return fields


def render_answer(answer: Answer, link: LinkFn | None = None) -> list[Message]:
    """The messages that show `answer`: its text (with [n] markers), then its numbered sources
    (each linked to its public page by `link`, where it gives one).

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
    for name, value in source_fields(answer.citations, link):
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
