"""`qabot eval`: score a gold set and print the table and the aggregates."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from bot.cli.options import CONTEXT, FRACTION, llm_option, location_options, make_settings
from bot.cli.pipeline import open_qa
from bot.eval.gold import load_gold

# The pipeline (Chroma, numpy, the embedding runtime) is imported inside the commands that use it:
# importing it costs ~1.3 s, and `qabot --help` or a mistyped flag should answer at once.
@click.command("eval", context_settings=CONTEXT)
@click.option("--gold", "gold_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gold questions (JSON Lines; see README 'Writing a gold set').")
@location_options
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True,
              help="Passages per question (also the k of recall@k).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: metrics and per-question results.")
@click.option("--min-answer-accuracy", type=FRACTION, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-citation-accuracy", type=FRACTION, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-refusal-precision", type=FRACTION, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-refusal-recall", type=FRACTION, default=None, help="Exit 1 below this (0–1).")
@click.option("--min-recall", type=FRACTION, default=None, help="Exit 1 if recall@k is below this (0–1).")
@llm_option
def eval_command(gold_path, corpus, index_dir, chroma_url, k, as_json, llm, **minimums):
    """Ask every question of a gold set and score answers, citations, refusals and retrieval.

    Prints a per-question table and the aggregates; exits 1 when a --min-* threshold is missed.
    """
    from bot.eval.scoring import evaluate

    items = load_gold(gold_path)
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
    """The per-question table (its short columns always visible, the question cut to fit), the
    aggregates, the figures per kind and tag, then each failure in full, wrapped to the terminal."""
    console = Console(highlight=False)
    table = Table(show_lines=False, box=None, pad_edge=False)
    for column in ("id", "ok", "lead", "cite", "rank", "ms"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    table.add_column("question", no_wrap=True, overflow="ellipsis", ratio=1)
    for r in report.items:
        if r.kind == "unanswerable":
            ok, lead, cite = ("[green]refused[/]" if r.refused else "[red]answered[/]"), "", ""
        else:
            ok = "[green]yes[/]" if r.answer_correct else ("[yellow]refused[/]" if r.refused else "[red]no[/]")
            lead = "" if r.lead_correct is None else ("[green]ok[/]" if r.lead_correct else "[red]wrong[/]")
            cite = "[green]yes[/]" if r.citation_correct else "[red]no[/]"
        table.add_row(r.id, ok, lead, cite, str(r.evidence_rank or "-"), f"{r.latency_ms:.0f}", r.question)
    console.print(table)
    console.print()
    for key, value in report.metrics.items():
        console.print(f"{key:>20}  {value}")
    for reason, count in (report.fallback_reasons() if report.llm else {}).items():
        console.print(f"{'fell back':>20}  {count}: {reason}", markup=False)
    groups = report.groups()
    if len(groups) > 1:
        console.print("\nBy kind and tag: n, answer acc., refusal recall, recall@k")
        for name, m in groups.items():
            figures = [f"{m['questions']:>3}", _pct(m["answer_accuracy"]), _pct(m["refusal_recall"]),
                       _pct(m[f"recall@{report.k}"])]
            console.print(f"  {name:<24} " + "  ".join(figures))
    failures = report.failures()
    if failures:
        console.print(f"\nFailures ({len(failures)})")
        for r in failures:
            expected = "a refusal" if r.kind == "unanswerable" else " | ".join(r.expected)
            console.print(f"[bold]{r.id}[/] ({r.kind}) {r.question}", markup=True)
            console.print(f"    expected: {expected}", markup=False)
            console.print(f"    got: {' '.join(r.answer.split())[:300]}", markup=False)


def _pct(value) -> str:
    return "   -" if value is None else f"{value:>4.2f}"
