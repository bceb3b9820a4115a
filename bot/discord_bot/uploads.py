"""Files given to `/qabot add`: checked before anything is stored — the size limit, a name the
loader knows (txt, md, rst, html, pdf) and content of that type (sniffed, not trusted from the
name), so a mislabelled or binary file is refused with one line."""
from __future__ import annotations

import re
from pathlib import PurePath

from bot.errors import UploadRefused
from bot.ingest.load import suffix_of

KINDS = "txt, md, rst, html, pdf"
_HTML_START = re.compile(rb"<(?:!doctype\s+html|html|head|body|p|div|h[1-6])\b", re.IGNORECASE)
SNIFF_BYTES = 8192  # enough to tell text from binary, and to find an HTML page's first tag


def size_text(n: int) -> str:
    """A file size as users read it (MB as in QABOT_MAX_UPLOAD_MB: 1024 × 1024 bytes)."""
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{max(1, round(n / 1024))} KB"


def safe_name(filename: str) -> str:
    """The file name to store, without folders or characters a shell or URL would trip on."""
    name = PurePath(filename.replace("\\", "/")).name
    name = re.sub(r"[^\w.\- ]+", "_", name).strip(" .")
    if len(name) > 120:
        stem, dot, suffix = name.rpartition(".")
        name = stem[: 119 - len(suffix)] + dot + suffix
    return name


def sniff(data: bytes) -> str:
    """What the content is: "pdf", "html", "text" (UTF-8, no NUL bytes) or "binary"."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    head = data[:SNIFF_BYTES]
    if b"\x00" in head:
        return "binary"
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the end of the sample
            return "binary"
    return "html" if _HTML_START.search(head.lstrip()[:2048]) else "text"


def expected_kinds(suffix: str) -> tuple[str, ...]:
    if suffix == ".pdf":
        return ("pdf",)
    if suffix in (".html", ".htm"):
        return ("html", "text")
    return ("text", "html")  # Markdown and reST may start with raw HTML


def check_name(filename: str, size: int, limit: int) -> str:
    """The stored name of an attachment, or UploadRefused before downloading it."""
    name = safe_name(filename)
    if size > limit:
        raise UploadRefused(f"{name or filename}: too large ({size_text(size)} > {size_text(limit)})")
    suffix = suffix_of(PurePath(name)) if name else None
    if suffix is None:
        raise UploadRefused(f"{name or filename}: unsupported type (I take {KINDS})")
    return name


def check_content(name: str, data: bytes, limit: int) -> None:
    """UploadRefused unless `data` is what `name` says it is (and within the limit)."""
    if len(data) > limit:
        raise UploadRefused(f"{name}: too large ({size_text(len(data))} > {size_text(limit)})")
    if not data.strip():
        raise UploadRefused(f"{name}: empty file")
    kind = sniff(data)
    suffix = suffix_of(PurePath(name))
    if kind not in expected_kinds(suffix):
        what = {"pdf": "a PDF", "html": "HTML", "text": "text", "binary": "binary data"}[kind]
        raise UploadRefused(f"{name}: its content is {what}, not what a {suffix} file holds")
