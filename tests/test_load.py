from pathlib import Path

import pytest

from bot.ingest.chunk import chunk_document, make_splitter
from bot.ingest.load import LoadError, clean_rst, load_document
from conftest import SEED, write_pdf


def load(path: Path):
    return load_document(path, path.name)


def test_seed_article_metadata_comes_from_front_matter():
    doc = load(SEED)
    assert doc.title.startswith("Russia to leave the International Space Station")
    assert doc.metadata == {"date": "2022-07-26", "place": "Moscow", "source": doc.metadata["source"]}
    assert doc.text.startswith("Moscow, July 26")
    assert "---" not in doc.text[:10]


def test_markdown_sections(tmp_path):
    p = tmp_path / "guide.md"
    p.write_text("# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n\n## Usage\n\nCall it.\n")
    doc = load(p)
    assert doc.title == "Guide"
    assert doc.section_at(doc.text.index("Run the")) == "Install"
    assert doc.section_at(doc.text.index("Call it")) == "Usage"


def test_rst_headings_and_inline_markup(tmp_path):
    p = tmp_path / "json.rst.txt"
    p.write_text(":mod:`json` --- JSON encoder\n============================\n\n"
                 "Basic Usage\n-----------\n\nUse :func:`~json.dumps` to get a ``str``.\n")
    doc = load(p)
    assert doc.title == "json --- JSON encoder"
    assert "Use json.dumps to get a str." in doc.text  # the full name is the better search key
    assert doc.section_at(doc.text.index("Use json.dumps")) == "Basic Usage"
    assert clean_rst("see `the docs <https://x.org>`_") == "see the docs"
    # Sphinx's "!" (no link) is no part of the name: ":mod:`!venv`" reads "venv".
    assert clean_rst("The :mod:`!venv` module") == "The venv module"


def test_html_keeps_visible_text_and_headings(tmp_path):
    p = tmp_path / "page.html"
    p.write_text("<html><head><title>Station</title><style>p{}</style><script>var x=1;</script></head>"
                 "<body><h1>Overview</h1><p>The station&nbsp;is big.</p><h2>Crew</h2>"
                 "<p>Seven <b>people</b> live there.</p></body></html>")
    doc = load(p)
    assert doc.title == "Station"
    assert "var x" not in doc.text and "p{}" not in doc.text
    assert "Seven people live there." in doc.text
    assert doc.section_at(doc.text.index("Seven")) == "Crew"
    assert doc.section_at(doc.text.index("The station")) == "Overview"


def test_html_preformatted_text_keeps_its_lines(tmp_path):
    # A man page or a config file in <pre>: its lines stay lines (collapsed into one, a man page's
    # headings ran into its sentences), and a word hyphenated at a line end is whole again.
    p = tmp_path / "smtp.8.html"
    p.write_text("<html><body><pre>\n<b>NAME</b>\n       smtp - Postfix SMTP client\n\n"
                 "<b>DESCRIPTION</b>\n       It processes requests from the queue  man-\n       ager.\n</pre>"
                 "<p>Then   some\n prose.</p><pre>myhostname = host.example.com\nmydomain = example.com</pre>"
                 "</body></html>")
    text = load(p).text
    assert "NAME\nsmtp - Postfix SMTP client\n\nDESCRIPTION\nIt processes requests from the queue manager." in text, text
    assert "Then some prose." in text
    assert "myhostname = host.example.com\nmydomain = example.com" in text


def test_deeply_nested_html_does_not_recurse(tmp_path):
    p = tmp_path / "deep.html"
    p.write_text("<div>" * 100_000 + "deep text" + "</div>" * 100_000)
    assert "deep text" in load(p).text


def test_pdf_keeps_page_numbers(tmp_path):
    p = tmp_path / "report.pdf"
    write_pdf(p, ["First page about orbits.", "Second page about docking."])
    doc = load(p)
    assert doc.page_at(doc.text.index("First page")) == 1
    assert doc.page_at(doc.text.index("Second page")) == 2


@pytest.mark.parametrize("name,content,reason", [
    ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage", "broken PDF"),
    ("image.txt", bytes(range(256)) * 10, "binary file"),
    ("empty.md", b"", "empty file"),
    ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8"),
    ("blank.txt", b"   \n\n  ", "no text"),
])
def test_bad_files_raise_one_line_load_errors(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(LoadError) as info:
        load(p)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_chunks_carry_exact_offsets_and_end_on_sentence_boundaries():
    doc = load(SEED)
    chunks = chunk_document(doc, make_splitter(300, 50))
    assert len(chunks) > 5
    for chunk in chunks:
        assert doc.text[chunk.start:chunk.end] == chunk.text
        assert chunk.text.rstrip()[-1] in ".”)\"", chunk.text[-40:]
        assert len(chunk.text) <= 300
    assert len({c.id for c in chunks}) == len(chunks)


def test_chunk_size_is_configurable():
    doc = load(SEED)
    small = chunk_document(doc, make_splitter(200, 0))
    large = chunk_document(doc, make_splitter(1500, 0))
    assert len(small) > len(large)
