"""What `ask` and `chat` print: help texts intact, and piped output neither wrapped nor padded."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from bot.cli.main import cli


# --- 16: help texts ------------------------------------------------------------------------------

def help_text(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    return result.output


def test_ask_help_shows_its_example_on_one_line():
    text = help_text("ask")
    assert "    printf 'when?\\nwho?\\n' | qabot ask --json -\n" in text
    assert "\b" not in text
    assert "If the index is missing or the corpus changed, ask ingests first." in text


def test_chat_help_keeps_its_lines():
    text = help_text("chat")
    assert "\b" not in text
    lines = text.splitlines()
    assert "  Commands: /sources (full passages of the last answer), /reset (forget the" in lines
    assert "  Prompt history: $QABOT_HISTORY_FILE, default ~/.local/state/qabot/history." in lines


@pytest.mark.parametrize("command", [(), ("ingest",), ("stats",), ("eval",), ("discord",), ("feedback",)])
def test_no_help_text_has_control_characters(command):
    assert not re.search(r"[\x00-\x09\x0b-\x1f]", help_text(*command))


# --- 17: piped output ----------------------------------------------------------------------------

def test_ask_piped_is_one_line_per_paragraph_without_trailing_spaces(iss_index, monkeypatch):
    """`qabot ask "…" | cat`: stdout is not a terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    args = ["ask", "when will Russia leave the ISS?", "--corpus", str(iss_index.corpus), "--index", str(iss_index.index)]
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False).stdout)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == data["answer"] and len(lines[0]) > 80
    assert all(line == line.rstrip() for line in lines), [line for line in lines if line != line.rstrip()]
    assert "\x1b[" not in result.stdout
