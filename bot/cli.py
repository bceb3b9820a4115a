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
              help="Characters per chunk (default 1000, or what the index was built with). [env: QABOT_CHUNK_SIZE]")
@click.option("--chunk-overlap", type=click.IntRange(0, 4000), default=None, envvar="QABOT_CHUNK_OVERLAP",
              help="Characters shared by neighbouring chunks (default 150, or the index's). [env: QABOT_CHUNK_OVERLAP]")
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
    from bot.index import IndexError_, VectorStore, index_exists, stats as read_stats

    settings = make_settings(corpus, index_dir, chroma_url)
    try:
        if settings.chroma_url:
            VectorStore(settings)  # an unreachable server is the first thing to report
        if not index_exists(settings):
            where = settings.chroma_url or settings.index
            raise UserError(f"no index at {where}; run `qabot ingest` first")
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


# --- ask ----------------------------------------------------------------------------------------

def open_qa(settings, quiet: bool = False):
    """The answer pipeline, ingesting first if the index is missing or the corpus changed."""
    from bot.index import IndexError_, corpus_changed, index_exists

    try:
        if settings.corpus.exists() and corpus_changed(settings):
            run_ingest(settings, quiet=quiet)
        elif not index_exists(settings):
            raise UserError(f"no index at {settings.index} and no corpus at {settings.corpus}; "
                            "run `qabot ingest --corpus DIR`")
        from bot.answer import QA

        return QA(settings)
    except (IndexError_, ValueError) as exc:  # ValueError: a bad --llm spec (LLMConfigError)
        raise UserError(str(exc)) from None


def llm_option(func):
    return click.option("--llm", envvar="QABOT_LLM", default=None, metavar="PROVIDER:MODEL",
                        help="Answer with a chat model (e.g. openai:gpt-4o-mini, ollama:llama3.1); "
                             "citations are verified and the extractive answer is the fallback. "
                             "[env: QABOT_LLM]")(func)


@cli.command(context_settings=CONTEXT)
@click.argument("question", required=True)
@location_options
@click.option("-k", "k", type=click.IntRange(1, 50), default=None, envvar="QABOT_K",
              help="Passages to consider (default 5). [env: QABOT_K]")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (with `-` as QUESTION: one JSON line per input line).")
@llm_option
def ask(question, corpus, index_dir, chroma_url, k, as_json, llm):
    """Answer QUESTION from the documents, citing the passages it came from.

    
    QUESTION "-" reads questions from standard input, one per line (the model loads once):
      printf 'when?\nwho?\n' | qabot ask --json -
    If the index is missing or the corpus changed, ask ingests first.
    """
    from bot.answer import QuestionError

    settings = make_settings(corpus, index_dir, chroma_url, k=k, llm=llm)
    if question != "-":
        from bot.answer import clean_question

        try:
            clean_question(question)  # fail fast, before loading anything
        except QuestionError as exc:
            raise UserError(str(exc)) from None
    qa = open_qa(settings, quiet=as_json)
    piped = question == "-"
    questions = (line.rstrip("\n") for line in sys.stdin) if piped else [question]
    if not as_json:
        from rich.console import Console

        from bot.terminal import print_answer

        console = Console(highlight=False)
    for q in questions:
        if piped and not q.strip():
            continue
        try:
            answer = qa.answer(q)
        except QuestionError as exc:
            if as_json:
                click.echo(json.dumps({"question": q, "error": str(exc)}, ensure_ascii=False))
            else:
                console.print(f"[red]{exc}[/]")
            continue
        if as_json:
            click.echo(json.dumps(answer_json(answer), ensure_ascii=False))
            sys.stdout.flush()  # one line per question as it is answered, for scripts
            continue
        if piped:
            console.print(f"[bold]Q:[/] {q}")
        print_answer(console, answer)
        if piped:
            console.print()


def answer_json(answer) -> dict:
    """The documented `ask --json` object."""
    return {
        "question": answer.question,
        "answer": answer.text,
        "refused": answer.refused,
        "answerer": answer.answerer,
        "standalone_question": answer.standalone_question,
        "citations": [
            {"n": c.n, "source": c.source, "title": c.title, "section": c.section, "page": c.page,
             "quote": c.quote, "start": c.start, "end": c.end, "score": c.score,
             "span_start": c.span_start, "span_end": c.span_end}
            for c in answer.citations
        ],
        "timings_ms": answer.timings_ms,
    }


# --- eval ---------------------------------------------------------------------------------------

@cli.command("eval", context_settings=CONTEXT)
@click.option("--gold", "gold_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gold questions (JSON Lines; see README 'Writing a gold set').")
@location_options
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True,
              help="Passages per question (also the k of recall@k).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: metrics and per-question results.")
@click.option("--min-answer-accuracy", type=float, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-citation-accuracy", type=float, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-refusal-precision", type=float, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-refusal-recall", type=float, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-recall", type=float, default=None, help="Exit 1 if recall@k is below this (0–1).")
@llm_option
def eval_command(gold_path, corpus, index_dir, chroma_url, k, as_json, llm, **minimums):
    """Ask every question of a gold set and score answers, citations, refusals and retrieval.

    Prints a per-question table and the aggregates; exits 1 when a --min-* threshold is missed.
    """
    from bot.evaluate import GoldError, evaluate, load_gold

    try:
        items = load_gold(gold_path)
    except GoldError as exc:
        raise UserError(str(exc)) from None
    settings = make_settings(corpus, index_dir, chroma_url, k=k, llm=llm)
    qa = open_qa(settings, quiet=as_json)
    report = evaluate(qa, items, k=k)
    metrics = report.metrics
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_eval(report)
    failed = []
    checks = {"answer_accuracy": "min_answer_accuracy", "citation_accuracy": "min_citation_accuracy",
              "refusal_precision": "min_refusal_precision", "refusal_recall": "min_refusal_recall",
              f"recall@{k}": "min_recall"}
    for metric, option in checks.items():
        minimum = minimums.get(option)
        if minimum is not None and (metrics[metric] is None or metrics[metric] < minimum):
            failed.append(f"{metric} {metrics[metric]} < {minimum}")
    if failed:
        click.echo("Below threshold: " + "; ".join(failed), err=True)
        sys.exit(1)


def print_eval(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(show_lines=False)
    for column in ("id", "question", "kind", "ok", "cite", "rank", "ms", "answer"):
        wide = column in ("question", "answer")
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60 if wide else None,
                         ratio=2 if wide else None)
    for r in report.items:
        if r.kind == "unanswerable":
            ok = "[green]refused[/]" if r.refused else "[red]answered[/]"
            cite = ""
        else:
            ok = "[green]yes[/]" if r.answer_correct else ("[yellow]refused[/]" if r.refused else "[red]no[/]")
            cite = "[green]yes[/]" if r.citation_correct else "[red]no[/]"
        table.add_row(r.id, r.question, r.kind, ok, cite, str(r.evidence_rank or "-"), f"{r.latency_ms:.0f}",
                      r.answer[:160])
    console.print(table)
    for key, value in report.metrics.items():
        console.print(f"{key:>20}  {value}")


def _register_front_ends() -> None:
    from bot.discord_bot.command import discord_command, feedback_command  # click + stdlib only

    cli.add_command(discord_command)
    cli.add_command(feedback_command)

    from bot.chat import chat_command  # click + stdlib only

    cli.add_command(chat_command)


_register_front_ends()


def main() -> None:
    try:
        cli(prog_name="qabot")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
