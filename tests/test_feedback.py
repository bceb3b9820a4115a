"""The feedback store and `qabot feedback`."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bot.feedback.command import feedback_command
from bot.config import feedback_db_path as default_path
from bot.feedback.votes import FeedbackStore

SOURCES = [{"n": 1, "source": "iss.txt", "title": "ISS", "section": None, "page": None}]


def vote(store: FeedbackStore, user: int, v: str, ref: str | None = "discord:1", question: str = "When?") -> None:
    store.record(question=question, answer="In 2030 [1].", sources=SOURCES, user_id=user, vote=v, ref=ref,
                 answerer="extractive")


def test_record_list_and_change_of_mind(tmp_path):
    store = FeedbackStore(tmp_path / "sub" / "fb.sqlite3")
    assert store.list() == []
    vote(store, 1, "up")
    vote(store, 2, "down")
    vote(store, 1, "down")  # same user, same answer: replaces the vote
    vote(store, 1, "up", ref="discord:2")
    votes = store.list()
    assert [(v.user_id, v.vote, v.ref) for v in votes] == [
        ("1", "down", "discord:1"), ("2", "down", "discord:1"), ("1", "up", "discord:2")]
    assert votes[0].sources == SOURCES and votes[0].question == "When?" and votes[0].created_at
    assert [v.ref for v in store.list(limit=1)] == ["discord:2"]


def test_votes_without_ref_are_all_kept(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    vote(store, 1, "up", ref=None)
    vote(store, 1, "up", ref=None)
    assert len(store.list()) == 2


def test_invalid_vote_is_refused(tmp_path):
    with pytest.raises(ValueError):
        vote(FeedbackStore(tmp_path / "fb.sqlite3"), 1, "meh")


def test_default_path_from_env(monkeypatch, tmp_path):
    assert str(default_path()).endswith("index/feedback.sqlite3")
    monkeypatch.setenv("QABOT_FEEDBACK_DB", str(tmp_path / "x.sqlite3"))
    assert FeedbackStore().path == tmp_path / "x.sqlite3"


def test_export_jsonl(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    vote(store, 1, "up")
    vote(store, 2, "down", question="Why?")
    out = tmp_path / "votes.jsonl"
    assert store.export_jsonl(out) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["user_id"], r["vote"], r["question"]) for r in rows] == [("1", "up", "When?"), ("2", "down", "Why?")]


def test_feedback_command(tmp_path):
    db = tmp_path / "fb.sqlite3"
    runner = CliRunner()
    result = runner.invoke(feedback_command, ["--db", str(db)])
    assert result.exit_code == 0 and "No votes yet" in result.output
    store = FeedbackStore(db)
    vote(store, 1, "up")
    vote(store, 2, "down", question="Why " * 40)
    result = runner.invoke(feedback_command, ["--db", str(db)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "2 votes: 1 👍, 1 👎"
    assert "👍  user 1  When?" in lines[1] and lines[2].endswith("…")
    result = runner.invoke(feedback_command, ["--db", str(db), "--json"])
    assert [v["vote"] for v in json.loads(result.output)] == ["up", "down"]
    out = tmp_path / "out.jsonl"
    result = runner.invoke(feedback_command, ["--db", str(db), "--export", str(out)])
    assert result.exit_code == 0 and result.output.strip() == f"Exported 2 votes to {out}"
    assert len(out.read_text().splitlines()) == 2


def test_answers_shown_for_votes_are_kept_then_expire(tmp_path, monkeypatch):
    from bot.feedback import votes

    store = FeedbackStore(tmp_path / "f.sqlite3")
    assert store.saved_answer("a" * 32) is None
    store.save_answer("a" * 32, question="q?", answer="A [1].", sources=[{"n": 1, "source": "x.txt"}],
                      refused=False, answerer="extractive")
    saved = FeedbackStore(tmp_path / "f.sqlite3").saved_answer("a" * 32)
    assert saved == {"question": "q?", "answer": "A [1].", "sources": [{"n": 1, "source": "x.txt"}],
                     "refused": False, "answerer": "extractive"}
    store.record(**saved, user_id=5, vote="up", ref="discord:1")
    assert [(v.question, v.vote) for v in store.list()] == [("q?", "up")]
    monkeypatch.setattr(votes, "ANSWER_DAYS", 0)  # a store opened later, when the answer is old
    assert FeedbackStore(tmp_path / "f.sqlite3").saved_answer("a" * 32) is None
    assert len(store.list()) == 1  # votes are never expired
