"""`qabot feedback`: list or export the 👍/👎 votes given to answers."""
from __future__ import annotations

import json
from pathlib import Path

import click

from bot.feedback.votes import FeedbackStore


@click.command("feedback")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every vote to FILE.jsonl (one JSON object per line).")
@click.option("--json", "as_json", is_flag=True, help="Print the votes as a JSON array.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Feedback database (default: $QABOT_FEEDBACK_DB or index/feedback.sqlite3).")
@click.option("--limit", type=int, default=None, help="Only the newest N votes.")
def feedback_command(export_path: Path | None, as_json: bool, db: Path | None, limit: int | None) -> None:
    """List or export the 👍/👎 votes given to answers."""
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
