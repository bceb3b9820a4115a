"""Opening the index for a command: ingest first (with a progress bar) when it is missing or the
corpus changed, then the answer pipeline. Shared by ingest, ask, chat and eval.

Commands that only answer (ask, chat, eval) never remove documents: an index built from another
folder is answered from as it is (with one line saying so), and a re-sync that would remove
every document or most of them is not done (one line says so too).
"""
from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bot.cli.options import Interrupted, UserError

INTERRUPTED_INGEST = "Interrupted (the next ingest resumes)."


# The pipeline (Chroma, numpy, the embedding runtime) is imported inside the commands that use it:
# importing it costs ~1.3 s, and `qabot --help` or a mistyped flag should answer at once.
def run_ingest(settings, paths=None, rebuild=False, quiet=False, embedder=None, confirm_removal=None):
    """Ingest with progress bars on stderr (files read, then chunks embedded); returns the report.
    Shared by ingest/ask/chat/eval. `confirm_removal` is `ingest()`'s. Ctrl-C becomes
    `Interrupted` (exit 130; what was written is kept). A whole-corpus ingest that leaves no
    document in the index is a one-line error."""
    from bot.errors import NoDocuments
    from bot.ingest.pipeline import ingest

    err = Console(stderr=True, highlight=False)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
        TimeRemainingColumn(), console=err, transient=True, disable=quiet or not err.is_terminal,
    )
    tasks: dict[str, int] = {}

    def show(phase: str, done: int, total: int, unit: str) -> None:
        if total == 0:
            return
        if phase not in tasks:
            progress.start()
            for other in tasks.values():  # one bar at a time: reading is over once embedding starts
                progress.update(other, visible=False)
            tasks[phase] = progress.add_task(phase, total=total, unit=unit)
        progress.update(tasks[phase], completed=done, total=total)

    def on_reading(done: int, total: int) -> None:
        show("Reading", done, total, "files")

    def on_progress(done: int, total: int) -> None:
        show("Embedding", done, total, "chunks")

    def on_skip(source: str, reason: str) -> None:
        err.print(f"[yellow]skipped[/] {source}: {reason}", markup=True, highlight=False)

    def on_notice(line: str) -> None:
        err.print(line, markup=False, highlight=False)

    def on_wait() -> None:
        err.print("Another ingest is running on this index; waiting for it to finish…")

    try:
        report = ingest(settings, paths, rebuild=rebuild, embedder=embedder, on_skip=on_skip,
                        on_progress=on_progress, on_reading=on_reading, on_notice=on_notice, on_wait=on_wait,
                        confirm_removal=confirm_removal)
    except KeyboardInterrupt:
        raise Interrupted(INTERRUPTED_INGEST) from None
    finally:
        if tasks:  # stopping a display that never started prints an empty line
            progress.stop()
    if not report.corpus_empty:
        click.echo(report.summary_line(), err=True)
    if not paths and (report.corpus_empty or report.documents == 0):
        raise NoDocuments(f"no indexable documents in {settings.corpus} ({len(report.skipped)} skipped); "
                          "qabot indexes .txt, .md, .rst, .html/.htm and .pdf files")
    return report


def open_qa(settings, quiet: bool = False):
    """The answer pipeline, ingesting first if the index is missing or the corpus changed (see the
    module docstring for what is never done), repairing vectors found missing when the corpus is
    there; one line on stderr for what the user should know."""
    from bot.ingest.status import corpus_changed, foreign_corpus, index_state, lacking, unusable
    from bot.qa.pipeline import QA

    state = index_state(settings)
    if state is None:
        if not settings.corpus.exists():
            where = settings.chroma_url or settings.index
            raise UserError(f"no index at {where} and no corpus at {settings.corpus}; run `qabot ingest --corpus DIR`")
        run_ingest(settings, quiet=quiet, confirm_removal=lambda removal: False)  # a new index: removes nothing
    elif settings.corpus.exists():
        note = foreign_corpus(settings, state)
        if note:
            click.echo(note, err=True)
        elif state.missing or corpus_changed(settings):
            _sync(settings, quiet)  # the ingest says what it repairs
    state = index_state(settings)
    problem = unusable(settings, state)
    if problem:
        raise UserError(problem)
    warning = lacking(settings, state)
    if warning:
        click.echo(warning, err=True)
    return QA(settings)


def _sync(settings, quiet: bool) -> None:
    """Bring the index in line with its corpus, unless that removes every document or most of them."""
    from bot.errors import RemovalRefused
    from bot.ingest.status import ingest_command

    refused = []

    def never(removal) -> bool:
        refused.append(removal)
        return False

    try:
        run_ingest(settings, quiet=quiet, confirm_removal=never)
    except RemovalRefused:
        removal = refused[0]
        click.echo(f"not re-syncing the index to {settings.corpus}: that would remove {removal.what()}; "
                   f"answering from the index as it is (`{ingest_command(settings)}` asks before doing it)", err=True)
