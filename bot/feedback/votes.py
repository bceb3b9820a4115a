"""Local SQLite store of 👍/👎 votes on answers, for later review and evaluation.

One row per (ref, user): voting again on the same answer replaces the earlier vote. The answers
shown with vote buttons are kept too (for `ANSWER_DAYS`), so a button still works after the bot
restarts: it carries only the answer's id.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from bot.config import feedback_db_path
from bot.feedback.sqlite_store import SQLiteStore

VOTES = ("up", "down")
ANSWER_DAYS = 90  # how long an answer's vote buttons keep working

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    user_id TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL,
    refused INTEGER NOT NULL DEFAULT 0,
    answerer TEXT,
    ref TEXT,
    UNIQUE (ref, user_id)
);
CREATE TABLE IF NOT EXISTS answers (
    answer_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL,
    refused INTEGER NOT NULL DEFAULT 0,
    answerer TEXT
);
CREATE TABLE IF NOT EXISTS reasons (
    ref TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (ref, user_id)
)
"""


@dataclass
class Vote:
    id: int
    created_at: str  # ISO 8601, UTC
    user_id: str
    vote: str  # "up" or "down"
    question: str
    answer: str
    sources: list[dict]
    refused: bool
    answerer: str | None
    ref: str | None  # where the answer was shown, e.g. "discord:<message id>"
    reason: str | None = None  # what the user said was wrong (👎, optional)
    scope: str | None = None  # the Discord scope that answered

    def to_json(self) -> dict:
        return asdict(self)


class FeedbackStore(SQLiteStore):
    SCHEMA = _SCHEMA
    ADDED_COLUMNS = (("answers", "scope", "TEXT"), ("votes", "scope", "TEXT"))

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__(path if path else feedback_db_path())

    def _prune(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM answers WHERE created_at < ?", (time.time() - ANSWER_DAYS * 86400,))

    def save_answer(self, answer_id: str, *, question: str, answer: str, sources: list[dict],
                    refused: bool = False, answerer: str | None = None, scope: str | None = None) -> None:
        """Keep an answer shown with vote buttons, for votes cast on it later (and for
        `qabot feedback report`: every question the bot answered or refused)."""
        with self._open() as conn:
            with conn:
                conn.execute("INSERT OR REPLACE INTO answers (answer_id, created_at, question, answer, sources,"
                             " refused, answerer, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (answer_id, time.time(), question, answer, json.dumps(sources, ensure_ascii=False),
                              int(refused), answerer, scope))

    def saved_answer(self, answer_id: str) -> dict | None:
        """What `save_answer` kept (keyword arguments for `record`), or None if unknown or expired."""
        if not self.path.exists():
            return None
        with self._open() as conn:
            row = conn.execute("SELECT question, answer, sources, refused, answerer, scope FROM answers"
                               " WHERE answer_id = ?", (answer_id,)).fetchone()
        if row is None:
            return None
        saved = {"question": row[0], "answer": row[1], "sources": json.loads(row[2]), "refused": bool(row[3]),
                 "answerer": row[4]}
        if row[5] is not None:
            saved["scope"] = row[5]
        return saved

    def answers_since(self, since: float) -> list[dict]:
        """Every answer shown since `since` (a time.time()), oldest first."""
        if not self.path.exists():
            return []
        with self._open() as conn:
            rows = conn.execute("SELECT created_at, question, answer, sources, refused, scope FROM answers"
                                " WHERE created_at >= ? ORDER BY created_at", (since,)).fetchall()
        return [{"created_at": r[0], "question": r[1], "answer": r[2], "sources": json.loads(r[3]),
                 "refused": bool(r[4]), "scope": r[5]} for r in rows]

    def record_reason(self, *, ref: str, user_id: int | str, reason: str) -> None:
        """What a user said was wrong with an answer they voted 👎 on (`ref` as in `record`)."""
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._open() as conn:
            with conn:
                conn.execute("INSERT OR REPLACE INTO reasons VALUES (?, ?, ?, ?)", (ref, str(user_id), reason, when))

    def record(
        self,
        *,
        question: str,
        answer: str,
        sources: list[dict],
        user_id: int | str,
        vote: str,
        refused: bool = False,
        answerer: str | None = None,
        ref: str | None = None,
        created_at: datetime | None = None,
        scope: str | None = None,
    ) -> None:
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, not {vote!r}")
        when = (created_at or datetime.now(timezone.utc)).isoformat(timespec="seconds")
        row = (when, str(user_id), vote, question, answer, json.dumps(sources, ensure_ascii=False),
               int(refused), answerer, ref, scope)
        with self._open() as conn:
            with conn:
                conn.execute(
                    "INSERT INTO votes (created_at, user_id, vote, question, answer, sources, refused, answerer, ref,"
                    " scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (ref, user_id) DO UPDATE SET vote = excluded.vote, created_at = excluded.created_at",
                    row,
                )

    def list(self, limit: int | None = None) -> list[Vote]:
        """Votes, oldest first (the newest `limit` ones if given)."""
        if not self.path.exists():
            return []
        with self._open() as conn:
            sql = ("SELECT v.id, v.created_at, v.user_id, v.vote, v.question, v.answer, v.sources, v.refused,"
                   " v.answerer, v.ref, r.reason, v.scope FROM votes v LEFT JOIN reasons r"
                   " ON r.ref = v.ref AND r.user_id = v.user_id AND v.vote = 'down'")
            if limit is not None:
                sql = f"SELECT * FROM ({sql} ORDER BY v.id DESC LIMIT {int(limit)})"
            rows = conn.execute(sql + " ORDER BY 1").fetchall()
        return [
            Vote(id=r[0], created_at=r[1], user_id=r[2], vote=r[3], question=r[4], answer=r[5],
                 sources=json.loads(r[6]), refused=bool(r[7]), answerer=r[8], ref=r[9], reason=r[10], scope=r[11])
            for r in rows
        ]

    def export_jsonl(self, out: str | os.PathLike) -> int:
        """Write every vote as one JSON object per line; returns the number written."""
        votes = self.list()
        with open(out, "w", encoding="utf-8") as f:
            for v in votes:
                f.write(json.dumps(v.to_json(), ensure_ascii=False) + "\n")
        return len(votes)
