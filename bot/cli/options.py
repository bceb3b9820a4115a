"""What every command shares: the context settings, the user-error exception, and the options
that mean the same thing everywhere (--corpus/--index/--chroma-url, --llm)."""
from __future__ import annotations

from pathlib import Path

import click

from bot.config import Settings

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit code 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the line to show for it (exit code 130)."""

    def __init__(self, message: str = "Interrupted.") -> None:
        super().__init__(message)
        self.message = message


class Fraction(click.ParamType):
    """A number from 0 to 1 (a minimum accuracy, precision or recall). Anything else is one line,
    exit 2 (click's own range check prints the usage too)."""

    name = "fraction"

    def get_metavar(self, param, ctx=None) -> str:
        return "0-1"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not 0 <= number <= 1:
            name = param.opts[0] if param is not None and param.opts else "the value"
            raise UserError(f"{name} must be a number from 0 to 1, got {value}")
        return number


FRACTION = Fraction()


def location_options(func):
    """--corpus/--index/--chroma-url, shared by every command that touches the index (ingest,
    stats, ask, chat, eval, discord): same names, help and environment variables everywhere."""
    func = click.option("--chroma-url", default=None, metavar="URL",
                        help="Use a Chroma server (http://host:port) instead of the embedded index. "
                             "[env: QABOT_CHROMA_URL]")(func)
    func = click.option("--index", "index_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                        help="Where the index is kept. [default: index; env: QABOT_INDEX]")(func)
    func = click.option("--corpus", default=None, type=click.Path(path_type=Path),
                        help="Folder of source documents. [default: corpus; env: QABOT_CORPUS]")(func)
    return func


def make_settings(corpus, index_dir, chroma_url, **extra) -> Settings:
    """Settings from the flags given (None: not given), then QABOT_* variables, then defaults.
    Flags take no `envvar=`: `Settings.from_env` is the one reader of the environment."""
    return Settings.from_env(corpus=corpus, index=index_dir, chroma_url=chroma_url, **extra)


def k_option(func):
    return click.option("-k", "k", type=int, default=None,
                        help="Passages to consider, 1–50. [default: 5; env: QABOT_K]")(func)


def llm_option(func):
    return click.option("--llm", default=None, metavar="PROVIDER:MODEL",
                        help="Answer with a chat model (e.g. openai:gpt-4o-mini, ollama:llama3.1); "
                             "citations are verified and the extractive answer is the fallback. "
                             "[env: QABOT_LLM]")(func)
