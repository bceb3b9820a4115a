"""The `qabot` command: one click group; each command lives in its own module and is added here,
so no command module imports another (nor this one).

Whatever a command ends with, the user sees at most one line about it: a `QabotError` is
"Error: …" and exit 2; Ctrl-C is "Interrupted." (or what the command was doing says, e.g.
"Interrupted (the next ingest resumes).") and exit 130; a closed output pipe (`qabot … | head -1`)
ends quietly with exit 141, as for any program stopped by SIGPIPE.
"""
from __future__ import annotations

import errno
import logging
import os
import sys

import click

from bot import __version__
from bot.cli.ask import ask
from bot.cli.chat import chat_command
from bot.cli.eval_command import eval_command
from bot.cli.index_commands import ingest, stats
from bot.cli.options import CONTEXT, Interrupted, UserError
from bot.discord_bot.command import discord_command
from bot.errors import QabotError
from bot.feedback.command import feedback_command

NOTICES = "bot.notice"  # what the engine tells the user while it works (bot.embed.registry)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head -1` leaves in ${PIPESTATUS[0]}


class PipeClosed(Exception):
    """The reader of our output went away; not an OSError, so that click passes it through."""


class QabotGroup(click.Group):
    """Every command's `QabotError` (a mistake the user can fix) becomes one line and exit 2;
    Ctrl-C one line and exit 130; a closed pipe `PipeClosed` (see `main`)."""

    def make_context(self, *args, **kwargs):
        with _outcomes():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        with _outcomes():
            try:
                return super().invoke(ctx)
            except QabotError as exc:
                raise UserError(str(exc)) from None


class _outcomes:
    """Ctrl-C and a closed pipe, wherever they arrive in a command (a context manager)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            message = exc.message if isinstance(exc, Interrupted) else "Interrupted."
            try:
                click.echo(message, err=True)
            except OSError:
                pass
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            raise PipeClosed() from None
        if isinstance(exc, SystemExit) and isinstance(exc.__context__, BrokenPipeError):
            raise PipeClosed() from None  # rich's own handling of a closed pipe (Console.on_broken_pipe)
        return False


@click.group(cls=QabotGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="qabot")
def cli() -> None:
    """Ask questions of a folder of documents; get short answers with the passages they came from.

    \b
    Quick start:
      qabot ingest                      # index ./corpus into ./index
      qabot ask "when will Russia leave the ISS?"
      qabot chat                        # interactive, with follow-up questions

    Everything runs offline on the packaged all-MiniLM-L6-v2 embedding model.
    """


for command in (ingest, stats, ask, eval_command, chat_command, discord_command, feedback_command):
    cli.add_command(command)


class _StderrLines(logging.Handler):
    """Shows a record's message as one line on stderr (the current one: click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(record.getMessage(), err=True)
        except Exception:
            pass


def show_notices() -> None:
    """What the engine says while it works (e.g. "Preparing the embedding model…") goes to stderr."""
    logger = logging.getLogger(NOTICES)
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines(logging.INFO))
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main() -> None:
    show_notices()
    try:
        cli(prog_name="qabot")
    except PipeClosed:
        _silence_output()
        sys.exit(EXIT_BROKEN_PIPE)
    except KeyboardInterrupt:  # after a command ended, e.g. while the interpreter cleans up
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so that flushing them at exit cannot fail again
    (which Python would report as "Exception ignored … BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)
