"""Nothing cryptic (issue #16, items 6-8): no class names in messages; a closed output pipe ends
quietly; bad settings are one line and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.cli.options import FRACTION

REPO = Path(__file__).resolve().parent.parent


def env(**extra) -> dict:
    """A subprocess environment without the developer's QABOT_*/DISCORD_* settings."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "DISCORD_"))}
    out.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    out.update(extra)
    return out


def qabot(*args: str, cwd: Path, timeout: float = 120, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env(**extra), capture_output=True,
                          text=True, timeout=timeout)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- 6: no class names -------------------------------------------------------------------------


def test_a_failed_start_up_says_what_failed_without_a_class_name(tmp_path):
    import asyncio

    from bot.config import DiscordConfig
    from bot.discord_bot.client import QABot, StartupError

    def warm_up():
        raise ValueError("the model files are unreadable")

    async def start():
        bot = QABot(lambda q, h: None, lambda: "", DiscordConfig(feedback_db=tmp_path / "fb.sqlite3"), warm_up=warm_up)
        try:
            await bot.setup_hook()
        finally:
            await bot.close()

    with pytest.raises(StartupError) as caught:
        asyncio.run(start())
    assert str(caught.value) == "the model files are unreadable"


# --- 7: a closed pipe ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["stats"], ["ask", "when will Russia leave the ISS?"], ["--help"]])
def test_closed_output_pipe_ends_quietly(tmp_path, iss_index, command):
    args = [sys.executable, "-m", "bot", *command]
    if command != ["--help"]:
        args += ["--corpus", str(iss_index.corpus), "--index", str(iss_index.index)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before a byte is written, as with `| head -0` or `| true`
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 141, err
    assert err == "", err


# --- 8: validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["ingest"], ["ask", "when?"], ["stats"]])
def test_bogus_precision_is_one_line(tmp_path, iss_index, command, monkeypatch):
    monkeypatch.setenv("QABOT_PRECISION", "bogus")
    result = CliRunner().invoke(cli, [*command, "--corpus", str(iss_index.corpus), "--index", str(iss_index.index)])
    assert result.exit_code == 2
    assert one_line(result.stderr) == "Error: precision (QABOT_PRECISION) must be auto, bf16 or fp32, got 'bogus'"


def test_fraction_options_are_one_line(tmp_path):
    """FRACTION (for eval's --min-* thresholds): 0 to 1, anything else one line and exit 2."""
    from bot.cli.main import QabotGroup

    @click.group(cls=QabotGroup)
    def group():
        pass

    @group.command()
    @click.option("--min-answer-accuracy", type=FRACTION)
    def check(min_answer_accuracy):
        click.echo(f"ok {min_answer_accuracy}")

    assert CliRunner().invoke(group, ["check", "--min-answer-accuracy", "0.8"]).output == "ok 0.8\n"
    for bad in ("1.5", "-0.1", "lots"):
        result = CliRunner().invoke(group, ["check", "--min-answer-accuracy", bad])
        assert result.exit_code == 2
        assert one_line(result.stderr) == f"Error: --min-answer-accuracy must be a number from 0 to 1, got {bad}"
