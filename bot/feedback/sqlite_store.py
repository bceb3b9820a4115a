"""The small SQLite stores of the Discord bot (votes, conversations, scope settings): one file
each, opened per call so worker threads never share a connection, columns added by newer versions
and expired rows dropped once per process."""
from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class SQLiteStore:
    SCHEMA = ""  # CREATE TABLE IF NOT EXISTS ... (run on every open: cheap, and the file may be new)
    # Columns added since a table was first created: (table, column, declaration), added to a file
    # made by an older version on the first open.
    ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = ()

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._pruned = False

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete expired rows; called in a transaction on the first open."""

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.executescript(self.SCHEMA)
            if not self._pruned:
                self._pruned = True
                with conn:
                    for table, column, declaration in self.ADDED_COLUMNS:
                        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                        if column not in have:
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                    self._prune(conn)
            yield conn
        finally:
            conn.close()
