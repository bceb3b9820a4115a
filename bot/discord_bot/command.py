"""`qabot discord` and `qabot feedback`. Only click and the standard library are imported at the
top: the CLI starts fast, and discord.py and the models load when these commands run."""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _load_dotenv(path: Path) -> None:
    """Load KEY=VALUE lines from `path` into os.environ, without overriding what is already set."""
    if not path.is_file():
        return
    try:
        from dotenv import load_dotenv
    except ImportError:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            os.environ.setdefault(key.strip(), value)
    else:
        load_dotenv(path, override=False)


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
    _load_dotenv(Path.cwd() / ".env")
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        _fail("DISCORD_TOKEN is not set (environment or a .env file in the working directory).")

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot").setLevel(logging.INFO)

    import discord

    from bot.discord_bot.client import DiscordConfig, StartupError, UserFacingError, run_bot

    try:
        config = DiscordConfig.from_env()
    except ValueError as e:
        _fail(str(e))

    from bot.config import Settings

    try:
        settings = Settings.from_env()
    except ValueError as e:
        _fail(f"invalid setting: {e}")
    qa: list = []  # the QA pipeline, loaded once (in `warm_up`, right after login)
    qa_lock = threading.Lock()

    def load_qa():
        from bot.answer import QA

        with qa_lock:
            if not qa:
                pipeline = QA(settings)
                if hasattr(pipeline, "warm_up"):
                    pipeline.warm_up()
                qa.append(pipeline)
            return qa[0]

    def answer_fn(question, history):
        from bot.answer import QuestionError

        try:
            return load_qa().answer(question, history=history)
        except QuestionError as e:  # empty or oversize question: its message is meant for the user
            raise UserFacingError(str(e)) from e

    def stream_fn(question, history):
        """With an LLM: the answer's text as it is written, then the verified Answer (QA.stream)."""
        from bot.answer import QuestionError

        try:
            yield from load_qa().stream(question, history=history)
        except QuestionError as e:
            raise UserFacingError(str(e)) from e

    def reindex_fn() -> str:
        from bot.index import ingest

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


@click.command("feedback")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every vote to FILE.jsonl (one JSON object per line).")
@click.option("--json", "as_json", is_flag=True, help="Print the votes as a JSON array.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Feedback database (default: $QABOT_FEEDBACK_DB or index/feedback.sqlite3).")
@click.option("--limit", type=int, default=None, help="Only the newest N votes.")
def feedback_command(export_path: Path | None, as_json: bool, db: Path | None, limit: int | None) -> None:
    """List or export the 👍/👎 votes given to answers."""
    from bot.feedback import FeedbackStore

    store = FeedbackStore(db)
    if export_path is not None:
        n = store.export_jsonl(export_path)
        click.echo(f"Exported {n} vote{'s' * (n != 1)} to {export_path}")
        return
    votes = store.list(limit=limit)
    if as_json:
        click.echo(json.dumps([v.to_json() for v in votes], ensure_ascii=False, indent=2))
        return
    if not votes:
        click.echo(f"No votes yet in {store.path}")
        return
    up = sum(v.vote == "up" for v in votes)
    click.echo(f"{len(votes)} vote{'s' * (len(votes) != 1)}: {up} 👍, {len(votes) - up} 👎")
    for v in votes:
        question = " ".join(v.question.split())
        question = question if len(question) <= 70 else question[:69] + "…"
        mark = "👍" if v.vote == "up" else "👎"
        click.echo(f"{v.created_at}  {mark}  user {v.user_id}  {question}")
