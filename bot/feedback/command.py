"""`qabot feedback`: list or export the 👍/👎 votes given to answers; `report` and `export --gold`
turn the questions, refusals and 👎 into a review (bot/feedback/review.py)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from bot.feedback.votes import FeedbackStore

DB_OPTION = click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="Feedback database (default: $QABOT_FEEDBACK_DB or index/feedback.sqlite3).")
DAYS_OPTION = click.option("--days", type=click.FloatRange(min=0, min_open=True), default=7.0, show_default=True,
                           help="How far back to look.")
SCOPE_OPTION = click.option("--scope", default=None, help="Only questions answered from this Discord scope.")


@click.group("feedback", invoke_without_command=True)
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every vote to FILE.jsonl (one JSON object per line).")
@click.option("--json", "as_json", is_flag=True, help="Print the votes as a JSON array.")
@DB_OPTION
@click.option("--limit", type=int, default=None, help="Only the newest N votes.")
@click.pass_context
def feedback_command(ctx: click.Context, export_path: Path | None, as_json: bool, db: Path | None,
                     limit: int | None) -> None:
    """List or export the 👍/👎 votes given to answers.

    \b
    Subcommands:
      report              the week's questions, refusals and 👎 with reasons
      export --gold FILE  👎 and refused questions as gold set candidates
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = db  # `qabot feedback --db X report` works as `qabot feedback report --db X`
        return
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
        reason = f"  “{' '.join(v.reason.split())[:60]}”" if v.reason else ""
        click.echo(f"{v.created_at}  {mark}  user {v.user_id}  {question}{reason}")


def _store(ctx: click.Context, db: Path | None) -> FeedbackStore:
    return FeedbackStore(db or ctx.obj)


@feedback_command.command("report")
@DB_OPTION
@DAYS_OPTION
@SCOPE_OPTION
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Questions per list.")
@click.pass_context
def report_command(ctx: click.Context, db: Path | None, days: float, scope: str | None, top: int) -> None:
    """The week's questions, refusals and 👎 (with their reasons), most frequent first."""
    from bot.feedback.review import report_lines, review

    for line in report_lines(review(_store(ctx, db), days=days, scope=scope), top=top):
        click.echo(line)


@feedback_command.command("export")
@click.option("--gold", "gold_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write the candidates to FILE (JSON Lines, the gold set format).")
@DB_OPTION
@DAYS_OPTION
@SCOPE_OPTION
@click.pass_context
def export_command(ctx: click.Context, gold_path: Path, db: Path | None, days: float, scope: str | None) -> None:
    """Write the 👎 and refused questions as gold set candidates for a person to complete.

    Each line is a gold item (id, question, answers, evidence, source, kind) with "answers"
    empty and "kind" "todo": fill in the accepted answers and the verbatim evidence, or set kind
    to "unanswerable". The answer given, its sources, why the question is there ("down" or
    "refused") and the users' reasons come along to help.
    """
    from bot.feedback.review import gold_candidates, review

    items = gold_candidates(review(_store(ctx, db), days=days, scope=scope))
    with open(gold_path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    click.echo(f"Wrote {len(items)} gold candidate{'s' * (len(items) != 1)} to {gold_path}")
