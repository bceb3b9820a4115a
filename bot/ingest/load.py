"""Step 1, load: a file on disk → a `Document` (plain text + where its headings and pages start).

Every format is reduced to one extracted text; chunk offsets, citations and quotes all refer to
that text, so a quote can always be located exactly.
"""
from __future__ import annotations

import io
import logging
import re
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from bot.errors import one_line
from bot.text import CELL_SEPARATOR

# Each supported suffix and the extraction format it is read by. The multi-part suffix comes first
# so "os.rst.txt" (Sphinx's _sources) loads as reST.
_FORMAT_OF = {".rst.txt": "rst", ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "rst",
              ".html": "html", ".htm": "html", ".pdf": "pdf"}
SUPPORTED_SUFFIXES = tuple(_FORMAT_OF)
# The version of the text each format's extraction gives. Bump a format's number whenever its text
# changes (what is kept, how it is laid out): the index records the versions it was made with, and
# the next ingest reads the files of a format whose number moved again, instead of serving the old
# text until a --rebuild. html 2: table rows on one line (" | " between cells); html 3: the lines of
# a <pre> kept; rst 2: Sphinx's "!" in a role is dropped (":mod:`!venv`" reads "venv").
EXTRACTION_VERSIONS = {"text": 1, "markdown": 1, "rst": 2, "html": 3, "pdf": 1}
MAX_FILE_BYTES = 20 * 1024 * 1024  # larger files are skipped: almost surely not prose to cite

# html.parser rescans to the end of the input for every unterminated tag, so a hostile 250 KB page
# of "<p<p<p…" takes minutes (CPython gh-135462). Parsing gets a time budget; real pages parse at
# several MB/s, far inside it.
HTML_SECONDS_BASE = 5.0
HTML_SECONDS_PER_MB = 5.0


class LoadError(Exception):
    """A file that cannot be indexed; the message is one line meant for the user."""


@dataclass
class Document:
    source: str  # path relative to the corpus root
    text: str
    title: str
    metadata: dict = field(default_factory=dict)  # front matter: date, place, source, ...
    headings: list[tuple[int, str]] = field(default_factory=list)  # (offset, heading), sorted
    pages: list[tuple[int, int]] = field(default_factory=list)  # (offset, 1-based page), sorted

    def section_at(self, offset: int) -> str | None:
        i = bisect_right([h[0] for h in self.headings], offset) - 1
        return self.headings[i][1] if i >= 0 else None

    def page_at(self, offset: int) -> int | None:
        i = bisect_right([p[0] for p in self.pages], offset) - 1
        return self.pages[i][1] if i >= 0 else None


def suffix_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if name.endswith(s)), None)


def format_of(path: Path) -> str | None:
    """The extraction format of a file ("html", "rst", ...), the key of EXTRACTION_VERSIONS."""
    suffix = suffix_of(path)
    return _FORMAT_OF[suffix] if suffix else None


def outdated_formats(recorded: dict | None) -> set[str]:
    """The formats whose text the index's recorded extraction versions (`recorded`, from its
    manifest) no longer match; an index made before the versions were kept holds version 1."""
    return {name for name, version in EXTRACTION_VERSIONS.items() if (recorded or {}).get(name, 1) != version}


def is_supported(path: Path) -> bool:
    return suffix_of(path) is not None


def too_large(size: int) -> str:
    return f"too large ({size / 1e6:.0f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)"


def load_document(path: Path, source: str, *, html_seconds: float = HTML_SECONDS_BASE,
                  html_seconds_per_mb: float = HTML_SECONDS_PER_MB) -> Document:
    """Load one file; raise LoadError (one clear line) for anything that cannot be indexed.
    An HTML page gets `html_seconds` plus `html_seconds_per_mb` per MB to parse (see _load_html)."""
    suffix = suffix_of(path)
    if suffix is None:
        raise LoadError("unsupported file type")
    try:
        size = path.stat().st_size
        if size == 0:
            raise LoadError("empty file")
        if size > MAX_FILE_BYTES:
            raise LoadError(too_large(size))
        data = path.read_bytes()
    except PermissionError:
        raise LoadError("permission denied") from None
    except OSError as exc:
        raise LoadError(f"cannot read ({exc.strerror or exc})") from None

    if suffix == ".pdf":
        doc = _load_pdf(data, source)
    else:
        text = _decode_text(data)
        if suffix in (".html", ".htm"):
            doc = _load_html(text, source, html_seconds + html_seconds_per_mb * len(text) / 1e6)
        else:
            meta, text = split_front_matter(text)
            if suffix in (".md", ".markdown"):
                headings = _markdown_headings(text)
            elif suffix in (".rst", ".rst.txt"):
                text = clean_rst(text)
                headings = _rst_headings(text)
            else:
                headings = []
            title = meta.pop("title", None) or (headings[0][1] if headings else None)
            doc = Document(source, text, title or _title_from_name(path), meta, headings)
    if not doc.text.strip():
        raise LoadError("no text to index")
    return doc


def _decode_text(data: bytes) -> str:
    sample = data[:8192]
    if b"\x00" in sample:
        raise LoadError("binary file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8") from None
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > 0.05 * min(len(text), 8192):
        raise LoadError("binary file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _title_from_name(path: Path) -> str:
    stem = path.name
    suffix = suffix_of(path)
    if suffix:
        stem = stem[: -len(suffix)]
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or path.name


# --- front matter -------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def split_front_matter(text: str) -> tuple[dict, str]:
    """`---`-delimited `key: value` lines at the top of a text file are the document's metadata."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            meta[key.strip().lower()] = value.strip().strip('"')
    return meta, text[match.end():]


# --- Markdown and reStructuredText headings -----------------------------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def _markdown_headings(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group(2).strip()) for m in _MD_HEADING.finditer(text)]


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`*+#:.])\1{2,}\s*$")


def _rst_headings(text: str) -> list[tuple[int, str]]:
    """A reST title is a text line followed by an underline of one repeated punctuation mark."""
    headings = []
    lines = text.split("\n")
    offset = 0
    offsets = []
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    for i in range(1, len(lines)):
        title = lines[i - 1].strip()
        if title and _RST_UNDERLINE.match(lines[i]) and len(lines[i].strip()) >= len(title) \
                and not _RST_UNDERLINE.match(lines[i - 1]):
            headings.append((offsets[i - 1], title))
    return headings


_RST_ROLE = re.compile(r":[\w:+-]+:`(?:[^`<]*?<)?[~!]*([^`<>]+?)>?`")  # "~" shortens, "!" unlinks: neither is text
_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`_{1,2}")


def clean_rst(text: str) -> str:
    """Render inline reST markup as the reader sees it: :func:`os.path.join` → os.path.join."""
    text = _RST_ROLE.sub(lambda m: m.group(1), text)
    text = _RST_LINK.sub(lambda m: m.group(1), text)
    return _RST_LITERAL.sub(lambda m: m.group(1), text)


# --- HTML --------------------------------------------------------------------------------------

_HTML_SKIP = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
_HTML_BLOCK = {
    "p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "li", "ul", "ol",
    "table", "tr", "br", "hr", "pre", "blockquote", "dd", "dt", "dl", "figure", "figcaption",
    "h1", "h2", "h3", "h4", "h5", "h6", "title",
}
# Cells of a table row stay on the row's line, apart: "tar -xvf foo.tar | extract files from
# "foo.tar" archive" (Debian Reference: a row per cell line made a table of commands one long
# "sentence" of the answerer's, joined without stops).
_HTML_CELL = {"td", "th"}
_HTML_HEADING = {"h1", "h2", "h3", "h4", "h5", "h6"}


_PRE_HYPHEN = re.compile(r"([a-z])-\n[ \t]*([a-z])")
# A line of capitals at the margin of preformatted text: a man page's section heading.
_PRE_HEADING = re.compile(r"^[A-Z][A-Z0-9]*(?: [A-Z0-9][A-Z0-9]*){0,5}$")


class _TooSlow(Exception):
    pass


class _VisibleText(HTMLParser):
    """Streaming extraction (no tree, no recursion, so deeply nested pages cannot blow the stack)."""

    def __init__(self, deadline: float = float("inf")) -> None:
        super().__init__(convert_charrefs=True)
        self.deadline = deadline
        self.parts: list[str] = []
        self.length = 0
        self.skip_depth = 0
        self.heading_start: int | None = None
        self.heading_part = 0
        self.headings: list[tuple[int, str]] = []
        self.title_parts: list[str] = []
        self.in_title = False
        self.cell_start = False  # a cell separator was the last thing written
        self.pre_depth = 0  # inside <pre>: its lines are lines of the text
        self.pre_regions: list[list] = []  # [start, end] offsets of each <pre>'s text

    def _newline(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self._emit("\n")

    def _emit(self, s: str) -> None:
        self.cell_start = False
        self.parts.append(s)
        self.length += len(s)

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _TooSlow

    def handle_comment(self, data):
        self._check_time()

    def handle_decl(self, decl):
        self._check_time()

    def handle_pi(self, data):
        self._check_time()

    def unknown_decl(self, data):
        self._check_time()

    def handle_starttag(self, tag, attrs):
        self._check_time()
        if tag == "title":
            self.in_title = True
        if tag == "pre":
            self.pre_depth += 1
            self.pre_regions.append([self.length, None])
        if tag in _HTML_SKIP:
            self.skip_depth += 1
        elif tag in _HTML_CELL:
            if self.parts and not self.parts[-1].endswith("\n") and not self.skip_depth:
                self._emit(CELL_SEPARATOR.lstrip() if self.parts[-1].endswith(" ") else CELL_SEPARATOR)
                self.cell_start = True
        elif tag in _HTML_BLOCK:
            self._newline()
            if tag in _HTML_HEADING and not self.skip_depth:
                self.heading_start = self.length
                self.heading_part = len(self.parts)

    def handle_startendtag(self, tag, attrs):
        if tag in _HTML_BLOCK:
            self._newline()

    def handle_endtag(self, tag):
        self._check_time()
        if tag == "title":
            self.in_title = False
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
            if self.pre_regions and self.pre_regions[-1][1] is None:
                self.pre_regions[-1][1] = self.length
        if tag in _HTML_SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _HTML_BLOCK:
            if tag in _HTML_HEADING and self.heading_start is not None:
                heading = "".join(self.parts[self.heading_part:]).strip()
                if heading:
                    self.headings.append((self.heading_start, " ".join(heading.split())))
                self.heading_start = None
            self._newline()

    def handle_data(self, data):
        self._check_time()
        if self.in_title:
            self.title_parts.append(data)
        if self.skip_depth:
            return
        if self.pre_depth:
            # Preformatted: a man page, a config file, a listing. Its line breaks are the text's
            # (collapsed, a whole man page was one line, its headings glued to its sentences),
            # and a word the formatter hyphenated at a line end is one word ("man-\n ager").
            data = _PRE_HYPHEN.sub(r"\1\2", data)
            for n, line in enumerate(data.split("\n")):
                if n:
                    self._emit("\n")
                line = re.sub(r"[ \t\f\v]+", " ", line)
                if line.strip():
                    self._emit(line)
            return
        text = re.sub(r"\s+", " ", data)
        if text.strip() or (self.parts and not self.parts[-1].endswith((" ", "\n"))):
            if self.parts and (self.parts[-1].endswith("\n") or self.cell_start):
                text = text.lstrip()
            if text:
                self._emit(text)


def _load_html(html: str, source: str, budget: float) -> Document:
    """Visible text and headings of a page, parsed within `budget` seconds."""
    parser = _VisibleText(deadline=time.monotonic() + budget)
    try:
        parser.feed(html)
        parser.close()
    except _TooSlow:
        raise LoadError(f"malformed HTML (unterminated tags; gave up parsing after {budget:.0f} s)") from None
    except Exception as exc:  # html.parser is lenient; anything raised here means a broken file
        raise LoadError(f"cannot parse HTML ({exc})") from None
    raw = "".join(parser.parts)
    for start, end in parser.pre_regions:  # a man page's "DESCRIPTION": a line of capitals at the margin
        for m in re.finditer(r"^.*$", raw[start:end if end is not None else len(raw)], re.M):
            if _PRE_HEADING.match(m.group(0)):
                parser.headings.append((start + m.start(), m.group(0)))
    parser.headings.sort()
    # Collapse runs of blank lines while keeping heading offsets valid: do it by re-mapping.
    text, mapping = _squeeze_blank_lines(raw)
    headings = [(mapping(o), h) for o, h in parser.headings]
    title = " ".join("".join(parser.title_parts).split()) or (headings[0][1] if headings else None)
    return Document(source, text, title or _title_from_name(Path(source)), {}, headings)


def _squeeze_blank_lines(raw: str):
    """Lines are stripped and runs of empty lines become one blank line; returns text and an
    offset map from the raw text to the squeezed one."""
    out: list[str] = []
    raw_starts: list[int] = []
    new_starts: list[int] = []
    pos = 0
    length = 0
    blank = True
    for line in raw.split("\n"):
        stripped = line.strip()
        if stripped:
            raw_starts.append(pos + (len(line) - len(line.lstrip())))
            new_starts.append(length + (1 if blank and out else 0))
            piece = ("\n" if blank and out else "") + stripped + "\n"
            out.append(piece)
            length += len(piece)
            blank = False
        else:
            blank = True
        pos += len(line) + 1

    def mapping(offset: int) -> int:
        i = bisect_right(raw_starts, offset) - 1
        return new_starts[i] + max(0, offset - raw_starts[i]) if i >= 0 else 0

    return "".join(out), mapping


# --- PDF ---------------------------------------------------------------------------------------

def _load_pdf(data: bytes, source: str) -> Document:
    from pypdf import PdfReader  # here: 0.5 s of start-up that corpora without PDFs never need

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns loudly about odd-but-fine files
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoadError("encrypted PDF")
        parts, pages, length = [], [], 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = (page.extract_text() or "").strip()
            if not page_text:
                continue
            if parts:
                parts.append("\n\n")
                length += 2
            pages.append((length, number))
            parts.append(page_text)
            length += len(page_text)
        info_title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    except LoadError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise LoadError(f"broken PDF ({one_line(exc, 80)})") from None
    text = "".join(parts)
    title = str(info_title).strip() if info_title else _title_from_name(Path(source))
    return Document(source, text, title, {}, [], pages)
