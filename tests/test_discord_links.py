"""Source links: a scope's URL template turns citations into links to the page and section, in
Discord embeds (set with `/qabot scope links`, real discord.py client against the fake Discord)
and in `qabot ask` (QABOT_SOURCE_URL); no template, no link."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.errors import SettingError
from bot.feedback.votes import FeedbackStore
from bot.source_links import check_template, section_anchor, source_url

sys.path.insert(0, str(Path(__file__).parent))
from discord_harness import bot_on_fake_discord, citation  # noqa: E402
from test_discord_scopes import admin, ask, scoped_library  # noqa: E402

PYDOCS = "https://docs.python.org/3/{path_without_suffix}.html#{section_anchor}"


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def test_source_url_fills_the_template():
    c = citation(1, source="tutorial/introduction.rst", section="3.1.1. Numbers")
    assert source_url(PYDOCS, c) == "https://docs.python.org/3/tutorial/introduction.html#numbers"
    assert section_anchor("3.1. Using Python as a Calculator") == "using-python-as-a-calculator"
    # No section: the link goes to the page, without an empty fragment.
    assert source_url(PYDOCS, citation(1, source="faq/general.rst", section=None)) == \
        "https://docs.python.org/3/faq/general.html"
    pdf = citation(1, source="specs/ISS plan.pdf", section=None, page=12)
    assert source_url("https://example.org/{path}#page={page}", pdf) == "https://example.org/specs/ISS%20plan.pdf#page=12"
    assert source_url(None, c) is None and source_url(PYDOCS, citation(1, source="/abs/outside.rst")) is None
    for bad in ("docs.python.org/{path}", "https://x.org/{nope}", "https://x.org/{path"):
        with pytest.raises(SettingError):
            check_template(bad)


def test_discord_citations_link_to_the_page_and_section(tmp_path):
    library = scoped_library(tmp_path)
    db = tmp_path / "feedback.sqlite3"

    def sources_field(payload: dict) -> str:
        return payload["embeds"][1]["fields"][0]["value"]

    async def body():
        async with bot_on_fake_discord(library=library, feedback_db=db) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "alpha"})
            assert "](" not in sources_field(await ask(fake, "before"))  # no template: no link
            token = await fake.slash("qabot scope links", {"template": "docs.example.org/{path}"}, permissions="32")
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the refusal")
            assert "must start with http" in fake.sent_for(token)[0].payload["content"]

            text = await admin(fake, "qabot scope links", {"template": PYDOCS})
            assert "now link to" in text
            linked = sources_field(await ask(fake, "after"))
            assert linked.startswith("[3.1. Getting started](https://docs.python.org/3/tutorial/alpha.html"
                                     "#getting-started)"), linked
            assert "`tutorial/alpha.rst`" not in linked  # the link replaces the bare file name
            assert "have no links" in await admin(fake, "qabot scope links", {"template": "off"})
            assert "](" not in sources_field(await ask(fake, "off again"))

    run(body())
    stored = [a["sources"][0].get("url") for a in FeedbackStore(db).answers_since(0)]
    assert stored == [None, "https://docs.python.org/3/tutorial/alpha.html#getting-started", None]


def test_default_scope_links_come_from_the_environment_setting(tmp_path):
    async def body():
        async with bot_on_fake_discord(library=scoped_library(tmp_path),
                                       source_url="https://example.org/{stem}") as (fake, bot):
            value = (await ask(fake, "q"))["embeds"][1]["fields"][0]["value"]
            assert "(https://example.org/default)" in value

    run(body())


def test_ask_prints_source_links(iss_index, monkeypatch):
    where = ["--corpus", str(iss_index.corpus), "--index", str(iss_index.index)]
    question = "When will Russia withdraw from the ISS?"
    plain = CliRunner().invoke(cli, ["ask", *where, question])
    assert plain.exit_code == 0 and "https://" not in plain.output
    monkeypatch.setenv("QABOT_SOURCE_URL", "https://example.org/wiki/{path_without_suffix}#{section_anchor}")
    linked = CliRunner().invoke(cli, ["ask", *where, question])
    assert linked.exit_code == 0, linked.output
    assert "https://example.org/wiki/russia-iss-withdrawal" in linked.output
    data = json.loads(CliRunner().invoke(cli, ["ask", "--json", *where, question]).output)
    assert data["citations"] and all(c["url"].startswith("https://example.org/wiki/") for c in data["citations"])
    monkeypatch.setenv("QABOT_SOURCE_URL", "https://example.org/{nope}")
    bad = CliRunner().invoke(cli, ["ask", *where, question])
    assert bad.exit_code == 2 and "unknown field(s) {nope}" in bad.output


def run(coro):
    return asyncio.run(coro)
