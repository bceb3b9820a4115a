"""Citations as links: a source path mapped to its public page by a URL template.

A template names the fields it needs in braces, e.g.
`https://docs.python.org/3/{path_without_suffix}.html#{section_anchor}`:

    {path}                 the source path in the corpus, e.g. tutorial/introduction.rst
    {path_without_suffix}  the same without its file suffix: tutorial/introduction
    {name} / {stem}        the file name, with / without its suffix
    {section_anchor}       the cited section as Sphinx/docutils writes its anchor
                           ("3.1.1. Numbers" → "numbers")
    {page}                 the cited page of a PDF

A fragment (`#…`) whose field is empty (no section, no page) is left out, so the link still goes
to the page; a template naming an unknown field is a SettingError when it is set.
"""
from __future__ import annotations

import re
import string
from pathlib import PurePosixPath
from urllib.parse import quote

from bot.errors import SettingError
from bot.quote import plain_label
from bot.schema import Citation

FIELDS = ("path", "path_without_suffix", "name", "stem", "section_anchor", "page")


def check_template(template: str) -> str:
    """`template` if it is an http(s) URL naming only known fields, else a SettingError (one line)."""
    template = template.strip()
    if not re.match(r"https?://[^\s/{}]+", template):
        raise SettingError(f"a source link template must start with http:// or https:// and a host, got {template!r}")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise SettingError(f"source link template {template!r}: {e}") from None
    unknown = sorted({n for n in names if n not in FIELDS})
    if unknown:
        raise SettingError(f"unknown field(s) {', '.join('{' + n + '}' for n in unknown)} in the source link "
                           f"template; known: {', '.join('{' + f + '}' for f in FIELDS)}")
    return template


def section_anchor(section: str | None, source: str = "") -> str:
    """The anchor docutils gives a heading (`nodes.make_id`): lower case, runs of other characters
    as one "-", leading digits and hyphens dropped ("3.1. Using Python" → "using-python")."""
    text = plain_label(section, source).lower()
    anchor = re.sub(r"[^a-z0-9]+", "-", text)
    return re.sub(r"^[-0-9]+|-+$", "", anchor)


def source_url(template: str | None, citation: Citation) -> str | None:
    """The public address of `citation`'s page (and section), or None without a template or for a
    source outside the corpus (an absolute path has no public page)."""
    if not template or not citation.source or citation.source.startswith("/"):
        return None
    path = PurePosixPath(citation.source.replace("\\", "/"))
    values = {
        "path": quote(str(path)),
        "path_without_suffix": quote(str(path.with_suffix(""))),
        "name": quote(path.name),
        "stem": quote(path.stem),
        "section_anchor": section_anchor(citation.section, citation.source),
        "page": str(citation.page) if citation.page else "",
    }
    base, hash_, fragment = template.partition("#")
    try:
        url = base.format(**values)
        if hash_:
            filled = fragment.format(**values)
            needed = [n for _, n, _, _ in string.Formatter().parse(fragment) if n]
            if all(values[n] for n in needed):
                url += "#" + filled
    except (KeyError, ValueError, IndexError):  # a template that was not checked
        return None
    return url
