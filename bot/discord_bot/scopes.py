"""Which scope answers where: guild- and channel-wide settings made with `/qabot`, kept in SQLite
next to the votes, so they survive a restart.

Resolution for a message or command in a channel (a thread counts as its parent channel):
  1. the channel's own setting: disabled → silent; a scope → that scope; enabled without a
     scope → the server's scope;
  2. else the server's setting (`/qabot scope set NAME where:server`);
  3. else, in a server nobody has configured, the default scope (the corpus/index the bot was
     started with): a bot set up before scopes existed keeps answering as it did. Once anything
     is set in a server, channels without a setting are silent ("new channels off until enabled").
"""
from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass

from bot.errors import SettingError
from bot.feedback.sqlite_store import SQLiteStore

DEFAULT_SCOPE = "default"
SERVER_WIDE = 0  # the channel id of a server-wide setting
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS places (
    guild_id INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    scope TEXT,
    enabled INTEGER NOT NULL,
    set_by TEXT,
    set_at REAL NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
CREATE TABLE IF NOT EXISTS scope_links (
    scope TEXT PRIMARY KEY,
    url_template TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scope_owners (
    scope TEXT PRIMARY KEY,
    guild_id INTEGER NOT NULL
)
"""


def scope_name(name: str) -> str:
    """`name` as a scope name (lower case letters, digits, - and _, up to 32), or a SettingError."""
    name = name.strip().lower()
    if not _NAME.fullmatch(name):
        raise SettingError(f"{name!r} is not a scope name: use up to 32 lower-case letters, digits, - and _")
    return name


@dataclass(frozen=True)
class Place:
    scope: str | None  # None: the server's scope (a channel enabled without one of its own)
    enabled: bool


@dataclass(frozen=True)
class Resolution:
    scope: str | None  # None: the bot is silent here
    why: str  # for `/qabot scope show`
    chosen: bool = True  # False: the default scope of a server nobody configured (forums stay quiet)


class ScopeStore(SQLiteStore):
    """The settings of every place, also held in memory: they are read on every message and only
    this process writes them."""

    SCHEMA = _SCHEMA

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._lock = threading.Lock()
        with self._open() as conn:
            rows = conn.execute("SELECT guild_id, channel_id, scope, enabled FROM places").fetchall()
            links = conn.execute("SELECT scope, url_template FROM scope_links").fetchall()
            owners = conn.execute("SELECT scope, guild_id FROM scope_owners").fetchall()
        self._places = {(g, c): Place(s, bool(e)) for g, c, s, e in rows}
        self._links = dict(links)
        self._owners = dict(owners)

    # -- reading (in memory)

    def place(self, guild_id: int, channel_id: int) -> Place | None:
        return self._places.get((guild_id, channel_id))

    def configured(self, guild_id: int) -> bool:
        return any(g == guild_id for g, _ in self._places)

    def resolve(self, guild_id: int, channel_id: int | None, parent_id: int | None = None) -> Resolution:
        server = self._places.get((guild_id, SERVER_WIDE))
        server_scope = server.scope if server is not None and server.enabled else None
        for cid in (channel_id, parent_id):
            own = self._places.get((guild_id, cid)) if cid else None
            if own is None:
                continue
            if not own.enabled:
                return Resolution(None, "disabled in this channel (/qabot enable turns it on)")
            if own.scope is not None:
                return Resolution(own.scope, f"scope `{own.scope}` set for this channel")
            if server_scope is not None:
                return Resolution(server_scope, f"enabled here, with the server's scope `{server_scope}`")
            return Resolution(None, "enabled here, but the server has no scope (/qabot scope set NAME)")
        if server is not None:
            if server.enabled and server.scope:
                return Resolution(server.scope, f"scope `{server.scope}` set for the whole server")
            return Resolution(None, "disabled for the whole server")
        if not self.configured(guild_id):
            return Resolution(DEFAULT_SCOPE, "nothing configured in this server: the default scope", chosen=False)
        return Resolution(None, "not enabled in this channel (/qabot scope set NAME or /qabot enable)")

    def url_template(self, scope: str) -> str | None:
        return self._links.get(scope)

    def owner(self, scope: str) -> int | None:
        """The server whose admins made the scope from Discord (None: made on the bot's machine,
        which the operator shares with every server the bot is in)."""
        return self._owners.get(scope)

    # -- writing (to disk, then memory)

    def set_place(self, guild_id: int, channel_id: int, *, scope: str | None, enabled: bool, by: int | str) -> None:
        with self._lock, self._open() as conn:
            with conn:
                conn.execute("INSERT OR REPLACE INTO places VALUES (?, ?, ?, ?, ?, ?)",
                             (guild_id, channel_id, scope, int(enabled), str(by), time.time()))
            self._places[(guild_id, channel_id)] = Place(scope, enabled)

    def claim(self, scope: str, guild_id: int) -> None:
        """Record that `guild_id` made `scope`: only its admins may use and change it."""
        with self._lock, self._open() as conn:
            with conn:
                conn.execute("INSERT OR IGNORE INTO scope_owners VALUES (?, ?)", (scope, guild_id))
            self._owners.setdefault(scope, guild_id)

    def set_url_template(self, scope: str, template: str | None) -> None:
        with self._lock, self._open() as conn:
            with conn:
                if template:
                    conn.execute("INSERT OR REPLACE INTO scope_links VALUES (?, ?)", (scope, template))
                else:
                    conn.execute("DELETE FROM scope_links WHERE scope = ?", (scope,))
            if template:
                self._links[scope] = template
            else:
                self._links.pop(scope, None)


def open_scope_store(path: str | os.PathLike) -> ScopeStore:
    """The store, or one line naming the file if it cannot be read (a damaged file)."""
    try:
        return ScopeStore(path)
    except sqlite3.DatabaseError as e:
        raise SettingError(f"cannot read the bot's scope settings in {path} ({e})") from None
