"""Documents from Discord, end to end with the real QA: `/qabot add` downloads attachments from
the fake Discord's CDN route, checks them (size limit, type by content), stores and ingests them
into the channel's scope with a progress message edited in place and a one-line result;
`/qabot sources` and `/qabot remove` list and remove; a failed run leaves nothing half-added."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from bot.discord_bot.library import Library
from bot.discord_bot.uploads import sniff

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_pdf  # noqa: E402
from discord_harness import bot_on_fake_discord  # noqa: E402
from test_discord_scopes import admin, ask  # noqa: E402

KETTLE = """# The Kettle Club handbook

## Meetings

The Kettle Club meets every second Thursday in the old boiler room. Members bring their own
mugs; the club provides oolong and a kettle that whistles in B flat.

## Dues

Annual dues are twelve silver spoons, payable to the treasurer before the spring equinox.
"""


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_TEST_TMP", str(tmp_path))


def run(coro):
    return asyncio.run(coro)


def library_for(tmp_path: Path, embedder, cls=Library) -> Library:
    return cls(Settings(corpus=tmp_path / "corpus", index=tmp_path / "index"), tmp_path / "scopes", embedder=embedder)


def test_sniffing_goes_by_content_not_by_name():
    assert sniff(b"%PDF-1.7\n...") == "pdf"
    assert sniff(b"  <!DOCTYPE html><html><body>x</body></html>") == "html"
    assert sniff("Plain words, ünïcode too.".encode()) == "text"
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00") == "binary"
    assert sniff(b"caf\xc3") == "text"  # a UTF-8 character cut at the end of the sample is still text


async def add(fake, files: dict | None = None, message: dict | None = None) -> tuple[str, list[str]]:
    """Run /qabot add with `files` (option → (name, bytes)), or "Add to qabot" on `message`; the
    final text of the reply and every text it showed before (the progress), all in one message
    edited in place."""
    if message is not None:
        token = await fake.message_command("Add to qabot", message, permissions="32")
    else:
        token = await fake.slash("qabot add", files, permissions="32")

    def shown() -> list[str]:
        first = [s.payload.get("content") for s in fake.sent_for(token)]
        original = fake.interactions[token].original_id
        return first + ([e.payload.get("content") for e in fake.edits_of(original)] if original else [])

    await fake.wait_for(lambda: any("(scope `" in (text or "") for text in shown()), 60, "the result of /qabot add")
    assert [s.kind for s in fake.sent_for(token)] == ["original"]  # one message, edited in place
    *progress, result = shown()
    return result, progress


def test_add_ask_list_and_remove_documents(tmp_path, embedder):
    library = library_for(tmp_path, embedder)
    scan = tmp_path / "scan.pdf"
    write_pdf(scan, [""])  # a page without a text layer
    big = b"x" * 70_000

    async def body():
        # Progress every 50 ms (1 s in use), so that indexing (≥ 100 ms here) always shows some.
        async with bot_on_fake_discord(library=library, max_upload_bytes=60_000, progress_interval=0.05) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "club"})
            assert "no documents yet" in await admin(fake, "qabot sources")

            result, progress = await add(fake, {"file": ("kettle.md", KETTLE.encode()),
                                                "file2": ("scan.pdf", scan.read_bytes(), "application/pdf"),
                                                "file3": ("notes.pdf", b"just some words, not a PDF")})
            assert result == ("1 file added, 1 skipped: scan.pdf: no text to index; refused: notes.pdf: its "
                              "content is text, not what a .pdf file holds (scope `club`).")
            assert progress[0] == "Downloading 3 files…" and any(p.startswith("Indexing") for p in progress)
            assert sorted(p.name for p in (tmp_path / "scopes" / "club" / "corpus").iterdir()) == ["kettle.md"]

            result, _ = await add(fake, {"file": ("huge.txt", big), "file2": ("tool.exe", b"MZ\x90\x00")})
            assert result == ("Nothing added; refused: huge.txt: too large (68 KB > 59 KB); tool.exe: unsupported "
                              "type (I take txt, md, rst, html, pdf) (scope `club`).")
            assert not any("huge.txt" in path for path in fake.cdn_requests)  # refused before downloading

            answer = await ask(fake, "When does the Kettle Club meet?")
            assert "Thursday" in answer["embeds"][0]["description"]
            assert answer["embeds"][1]["fields"][0]["name"].endswith("The Kettle Club handbook")

            listed = await admin(fake, "qabot sources")
            assert listed == "The scope `club` has 1 document:\n• `kettle.md`"
            missing = await admin(fake, "qabot remove", {"file": "../../corpus/x.md"})
            assert missing.startswith("no document `../../corpus/x.md` in the scope `club`")
            assert await admin(fake, "qabot remove", {"file": "kettle.md"}) == "Removed `kettle.md` from the scope `club`."
            assert "no documents yet" in await admin(fake, "qabot sources")

    run(body())
    from bot.ingest.status import stats

    assert stats(library.settings_for("club"))["documents"] == 0  # its passages left the index too
    assert library.loads == {"club": 1}


class FailingLibrary(Library):
    """Its ingest fails once the new files are in place (a full disk, a crash of the store)."""

    def _ingest(self, settings, paths=None, **callbacks):
        if paths and any(p.name == "boom.md" for p in paths) and (settings.corpus / "boom.md").exists():
            raise OSError(28, "No space left on device")
        return super()._ingest(settings, paths, **callbacks)


def test_a_failed_add_leaves_nothing_half_added(tmp_path, embedder):
    library = library_for(tmp_path, embedder, FailingLibrary)

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "club"})
            await add(fake, {"file": ("kettle.md", KETTLE.encode())})
            result, _ = await add(fake, {"file": ("boom.md", b"# Boom\n\nThe boiler room is closed on Mondays."),
                                         "file2": ("kettle.md", b"# Replaced\n\nThis must not stay.")})
            assert result == "Nothing added: No space left on device (scope `club`)."
            assert await admin(fake, "qabot sources") == "The scope `club` has 1 document:\n• `kettle.md`"

    run(body())
    corpus = tmp_path / "scopes" / "club" / "corpus"
    assert sorted(p.name for p in corpus.iterdir()) == ["kettle.md"]
    assert (corpus / "kettle.md").read_text() == KETTLE  # the earlier version is back


def test_add_the_files_of_a_message(tmp_path, embedder):
    """Apps → "Add to qabot" on a message someone posted with files: the same checks and result."""
    library = library_for(tmp_path, embedder)

    async def body():
        async with bot_on_fake_discord(library=library) as (fake, bot):
            await admin(fake, "qabot scope set", {"name": "club"})
            posted = await fake.message("here is our handbook", user_id=77,
                                        files=[("kettle.md", KETTLE.encode()), ("photo.png", b"\x89PNG\r\n")])
            (menu,) = [c for c in fake.commands if c["name"] == "Add to qabot"]
            assert menu["type"] == 3 and int(menu["default_member_permissions"]) == 32
            refused = await fake.message_command("Add to qabot", posted, permissions="0")
            await fake.wait_for(lambda: fake.sent_for(refused), 5, "the refusal")
            assert "Manage Server" in fake.sent_for(refused)[0].payload["content"]
            assert not library.sources("club")

            result, _ = await add(fake, message=posted)
            assert result == ("1 file added; refused: photo.png: unsupported type (I take txt, md, rst, html, pdf) "
                              "(scope `club`).")
            bare = await fake.message("no files here", user_id=77)
            token = await fake.message_command("Add to qabot", bare, permissions="32")
            await fake.wait_for(lambda: fake.sent_for(token), 5, "the refusal")
            assert fake.sent_for(token)[0].payload["content"] == "That message has no attached files."

    run(body())
    assert library.sources("club") == ["kettle.md"]
