"""Citation quotes as a reader sees them, for the terminal and Discord renderers.

A citation's `quote` is the chunk's raw text: Markdown or reST markup included, line breaks where
the file had them. `prose()` turns it into display text (markup stripped, headings on their own
lines) and carries the answering span (`span_start`/`span_end`, offsets into the raw quote)
through the cleaning, so the highlighted words stay the right ones. `excerpt()` cuts a one-line
window around that span at word boundaries, never across a heading (a heading is not glued onto
the sentence after it); `blocks()` gives the whole quote as paragraphs and headings.

Only the display changes: `Citation.quote` and its offsets stay those of the document text.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.schema import Citation
from bot.text import sentence_spans

# Formats whose extracted text has no markup to strip (HTML is reduced to its visible text).
_PLAIN_SUFFIXES = (".html", ".htm", ".pdf")
_RST_SUFFIXES = (".rst", ".rst.txt")
_MD_SUFFIXES = (".md", ".markdown")


# --- a string that remembers where each character came from --------------------------------------

class _Mapped:
    """Text plus, for each character, its offset in the original (one extra entry: the end)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = list(range(len(text) + 1))

    def sub(self, pattern: re.Pattern, keep: Callable[[re.Match], Iterable]) -> None:
        """Replace each match of `pattern` by the pieces `keep(match)` returns: (start, end)
        ranges of the current text (kept, with their origins) or strings (inserted, mapped to
        the match's start)."""
        text, pos = self.text, self.pos
        out: list[str] = []
        out_pos: list[int] = []
        last = 0
        for m in pattern.finditer(text):
            out.append(text[last:m.start()])
            out_pos.extend(pos[last:m.start()])
            for piece in keep(m):
                if isinstance(piece, str):
                    out.append(piece)
                    out_pos.extend([pos[m.start()]] * len(piece))
                else:
                    s, e = piece
                    out.append(text[s:e])
                    out_pos.extend(pos[s:e])
            last = m.end()
        out.append(text[last:])
        out_pos.extend(pos[last:])  # the end entry included
        self.text, self.pos = "".join(out), out_pos


def _group(n: int | str) -> Callable[[re.Match], list]:
    return lambda m: [m.span(n)]


def _drop(m: re.Match) -> list:
    return []


# --- the markup ---------------------------------------------------------------------------------

_EOL = r"[ \t]*(?:\n|\Z)"
# reST: ".. name:: argument" (with the ":option: value" lines under it), ".. _target:", "..  comment".
_DIRECTIVE = re.compile(
    r"^[ \t]*\.\.(?:[ \t]+(?P<body>[^\n]*?))?" + _EOL + r"(?P<options>(?:[ \t]+:[\w-][\w -]*:(?:[ \t][^\n]*)?(?:\n|\Z))*)"
    r"(?P<gap>(?:[ \t]*\n)*(?:(?![ \t]*\.\.(?:[ \t]|$))[ \t]*)?)",  # up to its content (not another directive)
    re.M)
# A quote (a chunk) may start inside a directive's line: "ionadded:: 3.6".
_DIRECTIVE_TAIL = re.compile(r"\A[ \t]*\.?[ \t]*[\w:-]*::(?![\w:])[^\n]*(?:\n|\Z)")
_FOOTNOTE = re.compile(r"\[(?:#[\w-]*|\*|\d+)\][ \t]+(?P<text>.*)")  # ".. [#] The note."
_DIRECTIVE_BODY = re.compile(r"(?P<name>[\w:-]+)::[ \t]*(?P<arg>.*)")
_ADMONITIONS = {
    "note": "Note:", "warning": "Warning:", "tip": "Tip:", "important": "Important:", "caution": "Caution:",
    "danger": "Danger:", "attention": "Attention:", "hint": "Hint:", "error": "Error:", "seealso": "See also:",
    "admonition": "",
}
_VERSIONS = {"versionadded": "New in version {}.", "versionchanged": "Changed in version {}:",
             "deprecated": "Deprecated since version {}:", "deprecated-removed": "Deprecated since version {}:"}
# Directives whose argument Sphinx shows as a heading line (a signature, a title).
_SIGNATURES = {
    "function", "method", "class", "exception", "attribute", "data", "decorator", "decoratormethod",
    "classmethod", "staticmethod", "coroutinefunction", "coroutinemethod", "abstractmethod", "property",
    "describe", "object", "option", "cmdoption", "envvar", "opcode", "pdbcommand", "rubric", "type", "macro",
    "member", "var", "program", "topic", "sidebar", "table", "figure",
}
# A title's underline (or overline), or a Markdown rule: one punctuation mark, three or more times.
_UNDERLINE = re.compile(r"^([=\-~^\"'`*+#:.])\1{2,}" + _EOL, re.M)
_UNDERLINE_LINE = re.compile(r"([=\-~^\"'`*+#:.])\1{2,}[ \t]*")
_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(?P<title>[^\n]*?)(?:[ \t]+#+)?[ \t]*$", re.M)
_FENCE = re.compile(r"^[ \t]*(?:```|~~~)[^\n]*" + _EOL, re.M)
_BLOCKQUOTE = re.compile(r"^[ \t]*>(?!>)[ \t]?", re.M)  # not a ">>>" prompt
_BULLET = re.compile(r"^[ \t]*[*+-][ \t]+(?=\S)", re.M)
_LITERAL_MARK_LINE = re.compile(r"^[ \t]*::" + _EOL, re.M)
_LITERAL_MARK = re.compile(r"(?P<space>[ \t]*)::(?=[ \t]*$)", re.M)  # "Example::" reads "Example:"

_IMAGE = re.compile(r"!\[(?P<text>[^\]\n]*)\]\([^)\n]*\)")
_LINK = re.compile(r"\[(?P<text>[^\]\n]+)\]\((?:[^()\s]|\([^()\s]*\))+(?:[ \t]+\"[^\"\n]*\")?\)")
_REF_LINK = re.compile(r"\[(?!\d+\])(?P<text>[^\]\n]+)\]\[[^\]\n]*\]")
_AUTOLINK = re.compile(r"<(?P<url>(?:https?|ftp|mailto):[^>\s]+)>")
_IN_PARAGRAPH = r"(?:[^`\n]|\n(?![ \t]*\n))"  # inline markup may go on over a line break, not a blank line
_RST_LINK = re.compile(r"`(?P<text>(?:(?!<)" + _IN_PARAGRAPH + r")+?)\s*<[^`>\n]+>`_{1,2}")
_RST_REF = re.compile(r"`(?P<text>" + _IN_PARAGRAPH + r"+?)`_{1,2}(?!\w)")
_RST_FOOTNOTE_REF = re.compile(r"[ \t]*\n?[ \t]*\[(?:#[\w-]*|\*|\d+)\]_(?!\w)")
_ESCAPE = re.compile(r"\\(?P<char>[*`_|\[\]#<>:])|\\ ")  # "\*" is "*"; reST's "\ " is nothing
_ROLE = re.compile(r"(?<![\w`]):?[\w+-]+(?::[\w+-]+)*:`(?P<content>" + _IN_PARAGRAPH + r"+?)`")
_CODE = re.compile(r"(?<!`)(?P<ticks>`{1,2})(?!`)(?P<code>[^`\n]+?)(?<!`)(?P=ticks)(?!`)")
_STRONG = re.compile(r"\*\*(?=\S)(?P<text>[^\n]+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(?P<text>[^\n*]+?)(?<=[^\s*])\*(?![\w*])")
# Markdown only: elsewhere "__init__" and "_private" are names, not markup.
_MD_STRONG = re.compile(r"(?<![\w\\])__(?=[^\s_])(?P<text>[^\n]+?)(?<=[^\s_])__(?!\w)")
_MD_EMPHASIS = re.compile(r"(?<![\w\\])_(?=[^\s_])(?P<text>[^\n_]+?)(?<=[^\s_])_(?!\w)")
_RST_NO_LINK = re.compile(r"(?<![\w!])!(?=[A-Za-z_])")  # ":keyword:`!break`" as the loader leaves it: "!break"


def _directive(m: re.Match) -> list:
    """A directive as Sphinx shows it: an admonition's label before its text ("Note: …"), a
    version note, a signature as a heading line; anything else (and comments, targets) gone."""
    gap = m.span("gap")
    body = m.group("body") or ""
    footnote = _FOOTNOTE.fullmatch(body.strip())
    if footnote:
        at = m.start("body")
        return [(at + footnote.start("text"), at + footnote.end("text")), "\n", gap]
    d = _DIRECTIVE_BODY.fullmatch(body.strip())
    if d is None:  # ".. _target:", ".. |name| replace:: …", a comment
        return [gap]
    name, arg = d.group("name").lower(), d.group("arg").strip()
    name = name.rsplit(":", 1)[-1]  # "py:function" → "function"
    if name in _VERSIONS and arg:
        version, _, rest = arg.partition(" ")
        return [" ".join(x for x in (_VERSIONS[name].format(version.rstrip(":")), rest.strip()) if x) + " "]
    if name in _ADMONITIONS:
        label = " ".join(x for x in (_ADMONITIONS[name], arg) if x)
        return [label + " "] if label else [gap]
    if name in _SIGNATURES and arg:
        return [_HEADING_MARK + arg + "\n", gap]
    return [gap]


# Marks a line as a heading while cleaning; removed (and recorded) at the end. A private-use
# character: it cannot be in extracted text that matters.
_HEADING_MARK = "\ue000"


def _role(m: re.Match) -> list:
    """":ref:`Title <label>`" → Title, ":meth:`~a.b.c`" → c, ":keyword:`!break`" → break."""
    s, e = m.span("content")
    content = m.group("content")
    target = re.fullmatch(r"(?P<title>.*?\S)\s*<[^<>]+>", content)
    if target:
        return [(s, s + target.end("title"))]
    if content.startswith("~"):
        return [(s + 1 + content.rfind(".", 1) if "." in content else s + 1, e)]
    if content.startswith("!"):
        return [(s + 1, e)]
    return [(s, e)]


def _code(m: re.Match) -> list:
    s, e = m.span("code")
    code = m.group("code")
    if len(code) > 2 and code.startswith(" ") and code.endswith(" "):
        s, e = s + 1, e - 1
    return [(s, e)]


def _strip_markup(mapped: _Mapped, markdown: bool, rst: bool) -> None:
    # Whole lines first: directives, title underlines, fences; then line starts; then inline markup.
    mapped.sub(_DIRECTIVE_TAIL, _drop)
    mapped.sub(_DIRECTIVE, _directive)
    mapped.sub(_UNDERLINE, _drop)
    mapped.sub(_FENCE, _drop)
    mapped.sub(_MD_HEADING, lambda m: [_HEADING_MARK, m.span("title")])
    mapped.sub(_BLOCKQUOTE, _drop)
    mapped.sub(_BULLET, lambda m: ["• "])
    mapped.sub(_LITERAL_MARK_LINE, _drop)
    mapped.sub(_LITERAL_MARK, lambda m: [] if m.group("space") else [":"])
    mapped.sub(_IMAGE, _group("text"))
    mapped.sub(_LINK, _group("text"))
    mapped.sub(_REF_LINK, _group("text"))
    mapped.sub(_RST_LINK, _group("text"))
    mapped.sub(_AUTOLINK, _group("url"))
    mapped.sub(_ROLE, _role)
    mapped.sub(_RST_REF, _group("text"))
    mapped.sub(_RST_FOOTNOTE_REF, _drop)
    mapped.sub(_CODE, _code)
    mapped.sub(_STRONG, _group("text"))
    mapped.sub(_EMPHASIS, _group("text"))
    if markdown:
        mapped.sub(_MD_STRONG, _group("text"))
        mapped.sub(_MD_EMPHASIS, _group("text"))
    mapped.sub(_ESCAPE, lambda m: [m.span("char")] if m.group("char") else [])
    if rst:
        mapped.sub(_RST_NO_LINK, _drop)


# --- headings -----------------------------------------------------------------------------------

_SENTENCE_END = ".!?:;,…\"”’)]"


def _raw_title_lines(raw: str) -> list[tuple[int, int]]:
    """(start, end) of the reST title lines in the raw quote: a line over an underline."""
    spans = []
    for m in _UNDERLINE.finditer(raw):
        line_end = m.start() - 1
        if line_end <= 0 or raw[line_end] != "\n":
            continue
        line_start = raw.rfind("\n", 0, line_end) + 1
        title = raw[line_start:line_end]
        if title.strip() and not _UNDERLINE_LINE.fullmatch(title.strip()):
            spans.append((line_start, line_end))
    return spans


def _looks_like_heading(line: str, after: str) -> bool:
    """A heading in plain text (HTML's <h2>, a PDF's or a .txt file's section title): a short
    line with no sentence punctuation, followed by a line (`after`) that starts a sentence."""
    line = line.strip()
    if not (0 < len(line) <= 60 and len(line.split()) <= 10 and (line[0].isupper() or line[0].isdigit())
            and line[-1] not in _SENTENCE_END and not line.startswith("•")):
        return False
    nxt = after.strip()
    return bool(nxt) and (nxt[0].isupper() or nxt[0].isdigit())


# --- prose --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prose:
    """A quote as display text: `span` (start, end) is the answering span in `text` (None: no
    span); `headings` are the (start, end) of `text`'s heading lines."""

    text: str
    span: tuple[int, int] | None
    headings: tuple[tuple[int, int], ...]


def prose(c: Citation) -> Prose:
    """The citation's quote as the reader should see it (see the module docstring)."""
    return prose_of(c.quote, c.span_start, c.span_end, c.source)


def prose_of(quote: str, span_start: int | None = None, span_end: int | None = None, source: str = "") -> Prose:
    name = source.lower()
    mapped = _Mapped(quote)
    raw_titles = []
    if not name.endswith(_PLAIN_SUFFIXES):
        raw_titles = _raw_title_lines(quote)
        _strip_markup(mapped, markdown=name.endswith(_MD_SUFFIXES), rst=name.endswith(_RST_SUFFIXES))
    # Trailing spaces of lines go; so do the heading marks, each recorded as its line's start.
    mapped.sub(re.compile(r"[ \t]+(?=\n)|[ \t]+\Z"), _drop)
    marks = [m.start() for m in re.finditer(_HEADING_MARK, mapped.text)]
    marked_lines = {m - i for i, m in enumerate(marks)}  # offsets once the marks are removed
    mapped.sub(re.compile(_HEADING_MARK), _drop)
    text, pos = mapped.text, mapped.pos

    headings = []
    lines = text.split("\n")
    start = 0
    for i, line in enumerate(lines):
        end = start + len(line)
        if line.strip():
            after = lines[i + 1] if i + 1 < len(lines) else ""
            if not after.strip() and (i == 0 or not lines[i - 1].strip()):
                # A line alone between blank lines: what follows is the next paragraph.
                after = next((x for x in lines[i + 1:] if x.strip()), "")
            if (start in marked_lines or any(s <= pos[start] < e for s, e in raw_titles)
                    or _looks_like_heading(line, after)):
                headings.append((start + len(line) - len(line.lstrip()), end))
        start = end + 1

    span = None
    if span_start is not None and span_end is not None and span_end > span_start:
        inside = [i for i in range(len(text)) if span_start <= pos[i] < span_end]
        if inside:
            span = (inside[0], inside[-1] + 1)
            span = _without_leading_heading(text, span, headings)
    return Prose(text, span, tuple(headings))


def _without_leading_heading(text: str, span: tuple[int, int], headings) -> tuple[int, int]:
    """A span that starts with a heading line and goes on past it starts after it instead: the
    heading is not part of the answering sentence."""
    s, e = span
    for hs, he in headings:
        if hs <= s < he or (s < hs and not text[s:hs].strip()):
            rest = _skip_space(text, he)
            if rest < e:
                s = rest
    return s, e


def plain_label(text: str | None, source: str = "") -> str:
    """A title or section heading as one line of prose (its markup stripped like a quote's)."""
    if not text:
        return ""
    return " ".join(prose_of(text, source=source).text.split())


# --- one-line excerpts --------------------------------------------------------------------------

SNAP = 60  # an excerpt's cut moves up to this many characters inward to a sentence boundary


@dataclass(frozen=True)
class Excerpt:
    """One line of a quote: `span` (start, end) in `text` or None; `cut_before`/`cut_after`:
    text was left out there (show "…")."""

    text: str
    span: tuple[int, int] | None
    cut_before: bool
    cut_after: bool


def excerpt(p: Prose, context: int, max_span: int | None = None) -> Excerpt:
    """A window of `p` around its span with up to `context` characters of text around it
    (split between both sides, what one side cannot use going to the other), cut at word
    boundaries, whitespace folded into single spaces, and never across a heading: a window
    that would reach into one stops at its line (headings are shown elsewhere: the section).
    A span longer than `max_span` is cut there, at a word boundary, with no context."""
    text = p.text
    if p.span is not None:
        s, e = p.span
    else:  # the start of the text, after any headings there
        s = 0
        for hs, he in p.headings:
            if not text[s:hs].strip():
                s = he
        s = e = _skip_space(text, s)
    # The region: from the end of the last heading before the span to the first heading after it.
    lo_region, hi_region = 0, len(text)
    for hs, he in p.headings:
        if he <= s:
            lo_region = max(lo_region, he)
        elif hs >= e:
            hi_region = min(hi_region, hs)
    lo_region = _skip_space(text, lo_region)

    if max_span is not None and e - s > max_span:
        cut = _word_end_before(text, s + max_span, s)
        cut = s + max_span if cut == s else cut  # one enormous word: cut it
        return _fold(text, s, cut, (s, cut), False, True)

    room = max(context, 0)
    before_avail, after_avail = s - lo_region, hi_region - e
    before = min(before_avail, room // 2)
    after = min(after_avail, room - before)
    before = min(before_avail, room - after)
    lo, hi = s - before, e + after
    if lo > lo_region and not text[lo - 1].isspace() and not text[lo].isspace():
        nxt = re.search(r"\s", text[lo:s])
        lo = lo + nxt.end() if nxt else s
    if hi < hi_region and not text[hi - 1].isspace() and not text[hi].isspace():
        hi = _word_end_before(text, hi, e)
    # Better still, a sentence's start or end, if one is near the cut.
    if lo > lo_region or hi < hi_region:
        sentences = [(a + lo_region, b + lo_region) for a, b in sentence_spans(text[lo_region:hi_region])]
        lo = min((a for a, _ in sentences if lo <= a <= min(lo + SNAP, s)), default=lo) if lo > lo_region else lo
        hi = max((b for _, b in sentences if max(hi - SNAP, e) <= b <= hi), default=hi) if hi < hi_region else hi
    return _fold(text, lo, hi, p.span, lo > lo_region, bool(text[hi:hi_region].strip()))


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _word_end_before(text: str, i: int, floor: int) -> int:
    """The end of the last whole word before offset `i`, but not before `floor`."""
    if i >= len(text) or text[i].isspace() or text[i - 1].isspace():
        return i
    space = max(text.rfind(" ", floor, i), text.rfind("\n", floor, i), text.rfind("\t", floor, i))
    return max(space, floor)


def _fold(text: str, lo: int, hi: int, span, cut_before: bool, cut_after: bool) -> Excerpt:
    """text[lo:hi] with runs of whitespace made single spaces and trimmed; the span (clipped to
    the window) moved along, without the spaces at its edges."""
    if span is not None:
        s, e = max(span[0], lo), min(span[1], hi)
        span = (s, e) if e > s and text[s:e].strip() else None
    out = ""

    def add(piece: str) -> None:
        nonlocal out
        piece = re.sub(r"\s+", " ", piece)
        out += piece.lstrip() if not out or out.endswith(" ") else piece

    if span is None:
        add(text[lo:hi])
        return Excerpt(out.rstrip(), None, cut_before, cut_after)
    s, e = span
    add(text[lo:s])
    if out and not out.endswith(" ") and text[s].isspace():
        out += " "
    start = len(out)
    out += re.sub(r"\s+", " ", text[s:e]).strip()
    end = len(out)
    if text[e - 1].isspace():
        out += " "
    add(text[e:hi])
    return Excerpt(out.rstrip(), (start, end), cut_before, cut_after)


# --- whole quotes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """A paragraph (whitespace folded) or a heading of a quote; `span` (start, end) in `text`."""

    text: str
    span: tuple[int, int] | None
    heading: bool = False


_BLOCK_BREAK = re.compile(r"\n[ \t]*\n\s*|\n(?=[ \t]*•)")


def blocks(p: Prose) -> list[Block]:
    """The whole quote as its headings and paragraphs, in order."""
    text = p.text
    cuts = {0, len(text)}
    for hs, he in p.headings:
        cuts.update((hs, he))
    for m in _BLOCK_BREAK.finditer(text):
        cuts.update((m.start(), m.end()))
    heading_starts = {hs for hs, _ in p.headings}
    out = []
    edges = sorted(cuts)
    for lo, hi in zip(edges, edges[1:]):
        if not text[lo:hi].strip():
            continue
        piece = _fold(text, lo, hi, p.span, False, False)
        out.append(Block(piece.text, piece.span, heading=_skip_space(text, lo) in heading_starts))
    return out


# --- sources ---------------------------------------------------------------------------------------

def source_groups(citations: Iterable[Citation]) -> list[list[Citation]]:
    """Citations in [n] order, consecutive ones of the same document (source and title) together."""
    groups: list[list[Citation]] = []
    for c in sorted(citations, key=lambda c: c.n):
        if groups and (groups[-1][-1].source, groups[-1][-1].title) == (c.source, c.title):
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups
