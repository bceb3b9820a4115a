"""The earlier Q/A of the bot's threads and DMs, kept in SQLite so a restarted bot still follows up.

Only the last `keep` turns of a conversation are stored (all a follow-up is ever given), and
conversations untouched for `max_age_days` are dropped when the store is opened.
"""
from __future__ import annotations

import os
import sqlite3
import time

from bot.schema import Turn
from bot.feedback.sqlite_store import SQLiteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    conversation_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
)
"""


class ConversationStore(SQLiteStore):
    SCHEMA = _SCHEMA

    def __init__(self, path: str | os.PathLike, keep: int = 6, max_age_days: float = 30) -> None:
        super().__init__(path)
        self.keep = max(1, keep)
        self.max_age_s = max_age_days * 86400

    def _prune(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM turns WHERE conversation_id IN (SELECT conversation_id FROM turns"
                     " GROUP BY conversation_id HAVING max(at) < ?)", (time.time() - self.max_age_s,))

    def add(self, conversation_id: int, turn: Turn) -> None:
        with self._open() as conn:
            with conn:
                seq = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM turns WHERE conversation_id = ?",
                                   (conversation_id,)).fetchone()[0]
                conn.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?)",
                             (conversation_id, seq, time.time(), turn.question, turn.answer))
                conn.execute("DELETE FROM turns WHERE conversation_id = ? AND seq <= ?",
                             (conversation_id, seq - self.keep))

    def turns(self, conversation_id: int) -> list[Turn]:
        """The stored turns, oldest first ([] for an unknown conversation)."""
        if not self.path.exists():
            return []
        with self._open() as conn:
            rows = conn.execute("SELECT question, answer FROM turns WHERE conversation_id = ? ORDER BY seq",
                                (conversation_id,)).fetchall()
        return [Turn(question=q, answer=a) for q, a in rows]
