"""Nothing cryptic (issue #16, items 5-8, and 16 for Discord): `qabot discord` without a route to
Discord or without an index is one line and exit 2; no class names in messages; Ctrl-C and a
closed output pipe end with one line or quietly; bad settings are one line and exit 2;
`discord --help` has the set-up steps and the options every command has."""
from __future__ import annotations

import os
import socket
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


def closed_port_url() -> str:
    """An API base on a loopback port nothing listens on (bound, then closed): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v10"


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- 5, 6: `qabot discord` ------------------------------------------------------------------------


def test_discord_without_a_route_to_discord_is_one_line(tmp_path, iss_index):
    api = closed_port_url()
    result = qabot("discord", "--corpus", str(iss_index.corpus), "--index", str(iss_index.index), cwd=tmp_path,
                   DISCORD_TOKEN="a-token", DISCORD_API_BASE=api, QABOT_FEEDBACK_DB=str(tmp_path / "fb.sqlite3"))
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"Error: cannot reach Discord at {api} (") and "Traceback" not in result.stderr, line
    assert "a-token" not in result.stderr


def discord_against_the_fake(tmp_path: Path, *args: str, **extra) -> tuple[int, str, list]:
    """`qabot discord ARGS` logged in to the fake Discord (tests/fake_discord.py) until it exits;
    its exit code, stderr and the requests it made."""
    import asyncio

    from fake_discord import TOKEN, FakeDiscord

    async def body():
        async with FakeDiscord() as fake:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "discord", *args, cwd=tmp_path,
                env=env(DISCORD_TOKEN=TOKEN, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url,
                        QABOT_FEEDBACK_DB=str(tmp_path / "fb.sqlite3"), **extra),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 120)
            return proc.returncode, err.decode(), list(fake.requests)

    return asyncio.run(body())


def test_discord_without_an_index_says_to_ingest_without_class_names(tmp_path):
    code, err, requests = discord_against_the_fake(tmp_path, "--index", str(tmp_path / "nowhere"),
                                                   QABOT_INDEX=str(tmp_path / "from-env"))
    assert requests and requests[0].path == "/users/@me"  # logged in: the token was fine
    assert code == 2, err
    assert one_line(err) == f"Error: no index at {tmp_path / 'nowhere'}; run `qabot ingest` first"


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


def test_discord_help_has_the_set_up_steps_and_the_shared_options():
    result = CliRunner().invoke(cli, ["discord", "--help"], terminal_width=80)
    assert result.exit_code == 0
    text = result.output
    for step in ("https://discord.com/developers/applications", "Message Content Intent",
                 '"bot" and "applications.commands"', "309237730304", 'README, section "Discord bot"'):
        assert step in text, step
    assert "\b" not in text
    assert "\n    1. https://discord.com/developers/applications -> New Application;\n" in text  # kept as written
    # The options every command has, with the same help and environment variables.
    ask_help = CliRunner().invoke(cli, ["ask", "--help"], terminal_width=80).output
    for option in ("--corpus PATH", "--index DIRECTORY", "--chroma-url URL", "--llm PROVIDER:MODEL", "-k INTEGER"):
        assert _option_help(text, option) == _option_help(ask_help, option), option


def _option_help(help_text: str, option: str) -> str:
    """The help of one option (its first line and continuation lines), whitespace folded."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 10) or line.strip().startswith("-"):
            break
        block.append(line)
    return " ".join(" ".join(block).split())


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
    assert one_line(result.stderr) == "Error: precision (QABOT_PRECISION) must be auto, bf16, fp32, int8 or int8-static, got 'bogus'"


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


def test_eval_thresholds_outside_zero_to_one_are_one_line(tmp_path):
    from click.testing import CliRunner

    from bot.cli.main import cli

    gold = tmp_path / "g.jsonl"
    gold.write_text('{"id": "a", "question": "q", "answers": [], "evidence": null, "source": null, "kind": "unanswerable"}\n')
    result = CliRunner().invoke(cli, ["eval", "--gold", str(gold), "--min-answer-accuracy", "1.5"])
    assert result.exit_code == 2 and "Traceback" not in result.output
