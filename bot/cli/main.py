"""The `qabot` command: one click group; each command lives in its own module and is added here,
so no command module imports another (nor this one)."""
from __future__ import annotations

import sys

import click

from bot import __version__
from bot.cli.ask import ask
from bot.cli.chat import chat_command
from bot.cli.eval_command import eval_command
from bot.cli.index_commands import ingest, stats
from bot.cli.options import CONTEXT, UserError
from bot.discord_bot.command import discord_command
from bot.errors import QabotError
from bot.feedback.command import feedback_command

class QabotGroup(click.Group):
    """Every command's `QabotError` (a mistake the user can fix) becomes one line and exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except QabotError as exc:
            raise UserError(str(exc)) from None


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


def main() -> None:
    try:
        cli(prog_name="qabot")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
