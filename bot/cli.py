"""The `qabot` command line. Thin: parse flags, call the shared steps, print.

Heavy modules (torch, chromadb, langchain) are imported inside commands, so `qabot --help`
is instant and each command loads only what it uses.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bot import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit code 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


def location_options(func):
    """--corpus/--index/--chroma-url, shared by every command that touches the index."""
    func = click.option("--chroma-url", envvar="QABOT_CHROMA_URL", default=None, metavar="URL",
                        help="Use a Chroma server (http://host:port) instead of the embedded index. "
                             "[env: QABOT_CHROMA_URL]")(func)
    func = click.option("--index", "index_dir", envvar="QABOT_INDEX", default="index", show_default=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Where the index is kept. [env: QABOT_INDEX]")(func)
    func = click.option("--corpus", envvar="QABOT_CORPUS", default="corpus", show_default=True,
                        type=click.Path(path_type=Path),
                        help="Folder of source documents. [env: QABOT_CORPUS]")(func)
    return func


def make_settings(corpus, index_dir, chroma_url, **extra):
    from bot.config import Settings

    return Settings.from_env(corpus=corpus, index=index_dir, chroma_url=chroma_url, **extra)


@click.group(context_settings=CONTEXT)
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


# --- ingest -------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@location_options
@click.option("--rebuild", is_flag=True, help="Drop the index and embed everything again.")
@click.option("--chunk-size", type=click.IntRange(100, 8000), default=None, envvar="QABOT_CHUNK_SIZE",
              help="Characters per chunk (default 800). [env: QABOT_CHUNK_SIZE]")
@click.option("--chunk-overlap", type=click.IntRange(0, 4000), default=None, envvar="QABOT_CHUNK_OVERLAP",
              help="Characters shared by neighbouring chunks (default 120). [env: QABOT_CHUNK_OVERLAP]")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line and problems.")
@click.option("--watch", is_flag=True,
              help="After indexing, keep re-indexing files as they change (one line per batch) until Ctrl-C.")
def ingest(paths, corpus, index_dir, chroma_url, rebuild, chunk_size, chunk_overlap, quiet, watch):
    """Index documents (default: the whole corpus folder).

    Incremental: unchanged files are skipped without embedding, changed files replace their
    chunks, deleted files lose theirs. Supports .txt .md .rst .html .htm .pdf.
    """
    settings = make_settings(corpus, index_dir, chroma_url, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    run_ingest(settings, list(paths) or None, rebuild=rebuild, quiet=quiet)
    if watch:
        from bot.watch import watch as watch_corpus

        watch_corpus(settings, list(paths) or None)


def run_ingest(settings, paths=None, rebuild=False, quiet=False, embedder=None):
    """Ingest with a progress bar on stderr; returns the report. Shared by ingest/ask/chat/eval."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bot.index import IndexError_, ingest as run

    err = Console(stderr=True, highlight=False)
    progress = Progress(
        TextColumn("[bold]Embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
        TimeRemainingColumn(), console=err, transient=True, disable=quiet,
    )
    task = None

    def on_progress(done: int, total: int) -> None:
        nonlocal task
        if total == 0:
            return
        if task is None:
            progress.start()
            task = progress.add_task("embed", total=total)
        progress.update(task, completed=done, total=total)

    def on_skip(source: str, reason: str) -> None:
        err.print(f"[yellow]skipped[/] {source}: {reason}", markup=True, highlight=False)

    def on_wait() -> None:
        err.print("Another ingest is running on this index; waiting for it to finish…")

    try:
        report = run(settings, paths, rebuild=rebuild, embedder=embedder,
                     on_skip=on_skip, on_progress=on_progress, on_wait=on_wait)
    except IndexError_ as exc:
        raise UserError(str(exc)) from None
    finally:
        progress.stop()
    click.echo(report.summary_line(), err=True)
    return report


# --- stats --------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@location_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(corpus, index_dir, chroma_url, as_json):
    """Show what the index holds: documents, chunks, size, embedding model."""
    from bot.index import IndexError_, index_exists, stats as read_stats

    settings = make_settings(corpus, index_dir, chroma_url)
    if not index_exists(settings):
        raise UserError(f"no index at {settings.index}; run `qabot ingest` first")
    try:
        info = read_stats(settings)
    except IndexError_ as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(info))
        return
    size = info["index_bytes"]
    rows = [
        ("Documents", info["documents"]),
        ("Chunks", info["chunks"]),
        ("Index", info["chroma_url"] or info["index"]),
        ("Index size", f"{size / 1e6:.1f} MB" if size is not None else "(server)"),
        ("Embedding model", f"{info['embedding_model']} ({info['precision']})"),
        ("Chunking", f"{info['chunking']['size']} chars, {info['chunking']['overlap']} overlap"
         if info["chunking"] else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def main() -> None:
    try:
        cli(prog_name="qabot")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
