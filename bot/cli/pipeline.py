"""Opening the index for a command: ingest first (with a progress bar) when it is missing or the
corpus changed, then the answer pipeline. Shared by ingest, ask, chat and eval."""
from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bot.cli.options import UserError

# The pipeline (Chroma, numpy, the embedding runtime) is imported inside the commands that use it:
# importing it costs ~1.3 s, and `qabot --help` or a mistyped flag should answer at once.
def run_ingest(settings, paths=None, rebuild=False, quiet=False, embedder=None):
    """Ingest with a progress bar on stderr; returns the report. Shared by ingest/ask/chat/eval."""
    from bot.ingest.pipeline import ingest

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
        report = ingest(settings, paths, rebuild=rebuild, embedder=embedder,
                        on_skip=on_skip, on_progress=on_progress, on_wait=on_wait)
    finally:
        progress.stop()
    click.echo(report.summary_line(), err=True)
    return report


def open_qa(settings, quiet: bool = False):
    """The answer pipeline, ingesting first if the index is missing or the corpus changed."""
    from bot.ingest.status import corpus_changed, index_exists
    from bot.qa.pipeline import QA

    if settings.corpus.exists() and corpus_changed(settings):
        run_ingest(settings, quiet=quiet)
    elif not index_exists(settings):
        raise UserError(f"no index at {settings.index} and no corpus at {settings.corpus}; "
                        "run `qabot ingest --corpus DIR`")
    return QA(settings)
