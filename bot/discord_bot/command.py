"""`qabot discord`: the bot process. It builds the answer, stream and reindex functions over one
shared QA pipeline and hands them to the client (bot/discord_bot/client.py)."""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import click

from bot.config import DiscordConfig, Settings, load_dotenv
from bot.errors import SettingError


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(code)


@click.command("discord")
@click.option("-v", "--verbose", is_flag=True, help="Log discord.py's own messages too.")
def discord_command(verbose: bool) -> None:
    """Run the Discord bot.

    The token comes from DISCORD_TOKEN (environment or a .env file in the working directory).
    Other settings: QABOT_ALLOWED_GUILDS, QABOT_ALLOWED_CHANNELS, QABOT_RATE_LIMIT (default 5/60),
    QABOT_DISCORD_DMS, QABOT_DISCORD_MESSAGE_CONTENT, QABOT_FEEDBACK_DB, DISCORD_API_BASE,
    DISCORD_GATEWAY_URL. With QABOT_LLM (PROVIDER:MODEL) answers are written by the chat model and
    appear as they are written, then are replaced by the verified answer.
    """
    load_dotenv(Path.cwd() / ".env")
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        _fail("DISCORD_TOKEN is not set (environment or a .env file in the working directory).")

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot").setLevel(logging.INFO)

    # Imported here: discord.py and the pipeline cost ~2 s of start-up the other commands never need.
    import discord

    from bot.discord_bot.client import StartupError, run_bot
    from bot.ingest.pipeline import ingest
    from bot.qa.pipeline import QA

    try:
        config = DiscordConfig.from_env()
        settings = Settings.from_env()
    except SettingError as e:
        _fail(str(e))
    qa: list = []  # the QA pipeline, loaded once (in `warm_up`, right after login)
    qa_lock = threading.Lock()

    def load_qa():
        with qa_lock:
            if not qa:
                pipeline = QA(settings)
                if hasattr(pipeline, "warm_up"):
                    pipeline.warm_up()
                qa.append(pipeline)
            return qa[0]

    def answer_fn(question, history):
        return load_qa().answer(question, history=history)

    def stream_fn(question, history):
        """With an LLM: the answer's text as it is written, then the verified Answer (QA.stream)."""
        yield from load_qa().stream(question, history=history)

    def reindex_fn() -> str:
        report = ingest(settings)
        pipeline = load_qa()
        if hasattr(pipeline, "refresh"):
            pipeline.refresh()  # pick up the new index generation
        return report.summary_line()

    try:
        # QA builds the LLM answerer whenever settings.llm is set (or fails to start): stream then.
        run_bot(token, answer_fn, reindex_fn, config, warm_up=load_qa, stream_fn=stream_fn if settings.llm else None)
    except discord.LoginFailure:
        _fail("Discord rejected the token (401 Unauthorized): check DISCORD_TOKEN.")
    except discord.PrivilegedIntentsRequired:
        _fail("the Message Content intent is not enabled for this application: enable it in the Developer "
              "Portal (Bot → Privileged Gateway Intents) or set QABOT_DISCORD_MESSAGE_CONTENT=0.")
    except StartupError as e:
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        _fail(f"could not load the question-answering pipeline: {e}", code=1)
