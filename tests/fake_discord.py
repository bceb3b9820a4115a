"""A fake Discord (REST + websocket gateway) on 127.0.0.1 for testing the real discord.py client.

It speaks just enough of the API for the bot: login, the gateway handshake (HELLO, heartbeats
and their ACKs, IDENTIFY → READY and GUILD_CREATE), command sync, interaction callbacks and
webhook follow-ups, channel messages and their edits (channel and webhook PATCH), typing and
threads. It enforces the Discord rules a bot can break — content and embed limits (400 / 50035),
empty messages (400 / 50006), interactions acknowledged within 3 s (404 / 10062) and only once
(400 / 40060), editing only the bot's own messages (403 / 50005), and optionally a minimum
interval between two writes of one message (429, `edit_interval`) — and records every request,
so tests can assert on what the bot sent. Tests inject gateway events: slash commands, button
clicks, messages.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import aiohttp
from aiohttp import web

APP_ID = 900000000000000001
BOT_ID = 900000000000000002
GUILD_ID = 900000000000000010
CHANNEL_ID = 900000000000000020  # #general
OTHER_CHANNEL_ID = 900000000000000021  # #random
FORUM_ID = 900000000000000022  # #help, a forum channel: its posts are threads
ROLE_ID = 900000000000000030  # @moderators
BOT_ROLE_ID = 900000000000000031  # the bot's managed role, "@qabot" in the mention picker
TOKEN = "fake-bot-token"
ACK_DEADLINE = 3.0  # seconds an interaction may wait for its callback

_snowflakes = itertools.count(1)
_DISCORD_EPOCH_MS = 1420070400000


def snowflake() -> int:
    """A fresh id with a plausible timestamp, like Discord's."""
    ms = int(time.time() * 1000) - _DISCORD_EPOCH_MS
    return (ms << 22) + (next(_snowflakes) % (1 << 22))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def user(user_id: int, name: str, bot: bool = False) -> dict:
    return {"id": str(user_id), "username": name, "global_name": name, "discriminator": "0",
            "avatar": None, "bot": bot, "public_flags": 0}


BOT_USER = user(BOT_ID, "qabot", bot=True)


def member(u: dict, permissions: str = "0") -> dict:
    return {"user": u, "roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False,
            "flags": 0, "permissions": permissions}


# --- Discord's message limits -------------------------------------------------------------


def message_errors(payload: dict, *, creating: bool = True) -> dict | None:
    """Discord's validation of a message payload: None if valid, else the `errors` object."""
    errors: dict[str, Any] = {}

    def err(path: str, message: str) -> None:
        errors[path] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": message}]}

    content = payload.get("content") or ""
    if len(content) > 2000:
        err("content", "Must be 2000 or fewer in length.")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        err("embeds", "Must be 10 or fewer in length.")
    total = 0
    for i, e in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            value = e.get(key) or ""
            total += len(value)
            if len(value) > limit:
                err(f"embeds.{i}.{key}", f"Must be {limit} or fewer in length.")
        fields = e.get("fields") or []
        if len(fields) > 25:
            err(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                value = f.get(key) or ""
                total += len(value)
                if not value.strip() or len(value) > limit:
                    err(f"embeds.{i}.fields.{j}.{key}", f"Must be between 1 and {limit} in length.")
        for part, key, limit in (("footer", "text", 2048), ("author", "name", 256)):
            value = (e.get(part) or {}).get(key) or ""
            total += len(value)
            if len(value) > limit:
                err(f"embeds.{i}.{part}.{key}", f"Must be {limit} or fewer in length.")
    if total > 6000:
        err("embeds", "Embed size exceeds maximum size of 6000")
    rows = payload.get("components") or []
    if len(rows) > 5:
        err("components", "Must be 5 or fewer in length.")
    for i, row in enumerate(rows):
        if len(row.get("components") or []) > 5:
            err(f"components.{i}.components", "Must be 5 or fewer in length.")
        for j, c in enumerate(row.get("components") or []):
            if len(c.get("custom_id") or "") > 100 or len(c.get("label") or "") > 80:
                err(f"components.{i}.components.{j}", "Must be 100 or fewer in length.")
    if creating and not errors and not (content.strip() or embeds or rows or payload.get("attachments")):
        return {"_empty": True}
    return errors or None


# --- records --------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str  # without the /api/v10 prefix
    query: dict
    json: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Sent:
    """A message the bot created, by any route."""

    kind: str  # "channel", "callback", "followup", "original" (PATCH @original before it existed)
    channel_id: int | None
    payload: dict
    message: dict  # the message as it is now (edits update it in place)
    interaction_token: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Edited:
    """An accepted edit of a message (channel PATCH or webhook PATCH)."""

    message_id: int
    channel_id: int | None
    payload: dict  # the PATCH body
    message: dict  # a copy of the message after the edit
    interaction_token: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Interaction:
    id: int
    token: str
    created: float
    kind: int  # 2 application command, 3 component
    data: dict
    channel_id: int
    acked: bool = False
    callback_type: int | None = None
    modal: dict | None = None  # the modal the bot answered with (callback type 9)
    original_id: int | None = None  # the response message: the callback's, or the first follow-up after a defer
    message_ids: set[int] = field(default_factory=set)  # messages sent with this interaction's token


def _json(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py treats "application/json; charset=utf-8" as text.
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def _error(status: int, code: int, message: str, errors: dict | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return _json(body, status)


class FakeDiscord:
    def __init__(self, *, heartbeat_interval_ms: int = 250, token: str = TOKEN,
                 allow_message_content: bool = True, ack_deadline: float = ACK_DEADLINE,
                 edit_interval: float = 0.0):
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.token = token
        self.allow_message_content = allow_message_content
        self.ack_deadline = ack_deadline
        self.edit_interval = edit_interval  # > 0: an edit sooner than this after the last write → 429
        self.requests: list[Recorded] = []
        self.sent: list[Sent] = []
        self.edits: list[Edited] = []
        self.written: dict[int, float] = {}  # message id → monotonic time of its last create/edit
        self.rejected: list[tuple[str, dict]] = []  # (path, error body) of refused requests
        self.commands: list[dict] = []  # the last synced global commands
        self.interactions: dict[str, Interaction] = {}  # by token
        self.heartbeats: list[float] = []  # monotonic time of every heartbeat received (all ACKed)
        self.identify: dict | None = None
        self.ready = asyncio.Event()
        self.channels: dict[int, dict] = {
            CHANNEL_ID: self._text_channel(CHANNEL_ID, "general"),
            OTHER_CHANNEL_ID: self._text_channel(OTHER_CHANNEL_ID, "random"),
            FORUM_ID: {**self._text_channel(FORUM_ID, "help"), "type": 15, "available_tags": [],
                       "default_reaction_emoji": None, "default_sort_order": None, "default_forum_layout": 0,
                       "default_thread_rate_limit_per_user": 0, "flags": 0},
        }
        self.messages: dict[int, dict] = {}  # every message by id (bot's and injected)
        self.cdn: dict[str, bytes] = {}  # attachment id → the file (GET /cdn/attachments/{id}/{name})
        self.cdn_requests: list[str] = []
        self._ws: web.WebSocketResponse | None = None
        self._ws_lock = asyncio.Lock()
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle

    async def start(self) -> "FakeDiscord":
        app = web.Application()
        app.router.add_route("GET", "/", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_route("GET", "/cdn/attachments/{aid}/{filename}", self._cdn)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "FakeDiscord":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    # --- waiting and querying (for tests)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.01)

    def requests_to(self, method: str, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def sent_for(self, interaction_token: str) -> list[Sent]:
        return [s for s in self.sent if s.interaction_token == interaction_token]

    def sent_in(self, channel_id: int) -> list[Sent]:
        return [s for s in self.sent if s.channel_id == channel_id and s.kind == "channel"]

    def edits_of(self, message_id: int | str) -> list[Edited]:
        return [e for e in self.edits if e.message_id == int(message_id)]

    def command_id(self, name: str) -> str:
        return next(c["id"] for c in self.commands if c["name"] == name)

    # --- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        await self._send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            op = data.get("op")
            if op == 1:
                self.heartbeats.append(time.monotonic())
                await self._send({"op": 11})
            elif op == 2:
                await self._on_identify(ws, data["d"])
            elif op == 6:  # RESUME: make it start over
                await self._send({"op": 9, "d": False})
        return ws

    async def _on_identify(self, ws: web.WebSocketResponse, d: dict) -> None:
        self.identify = {k: v for k, v in d.items() if k != "token"}
        if d.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        if d.get("intents", 0) & (1 << 15) and not self.allow_message_content:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        await self.dispatch("READY", {
            "v": 10, "user": BOT_USER, "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
            "session_id": "fake-session", "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0}, "private_channels": [], "relationships": [],
        })
        await self.dispatch("GUILD_CREATE", {
            "id": str(GUILD_ID), "name": "Test guild", "icon": None, "owner_id": "1", "unavailable": False,
            "member_count": 2, "large": False, "features": [], "emojis": [], "stickers": [],
            "roles": [
                {"id": str(GUILD_ID), "name": "@everyone", "permissions": "1071698660929", "position": 0,
                 "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0},
                {"id": str(ROLE_ID), "name": "moderators", "permissions": "0", "position": 1,
                 "color": 0, "hoist": False, "managed": False, "mentionable": True, "flags": 0},
                {"id": str(BOT_ROLE_ID), "name": "qabot", "permissions": "0", "position": 2, "color": 0,
                 "hoist": False, "managed": True, "mentionable": False, "flags": 0,
                 "tags": {"bot_id": str(BOT_ID)}},
            ],
            "channels": [c for c in self.channels.values() if c["type"] in (0, 15)],
            "threads": [], "members": [{**member(BOT_USER), "roles": [str(BOT_ROLE_ID)]}], "voice_states": [], "presences": [],
            "joined_at": "2024-01-01T00:00:00+00:00",
        })
        self.ready.set()

    async def _send(self, payload: dict) -> None:
        async with self._ws_lock:
            if self._ws is not None and not self._ws.closed:
                await self._ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: dict) -> None:
        self._seq += 1
        await self._send({"op": 0, "t": event, "s": self._seq, "d": data})

    # --- injecting events

    async def slash(self, name: str, options: dict | None = None, *, user_id: int = 111, guild: bool = True,
                    channel_id: int = CHANNEL_ID, permissions: str = "0", roles: list[int] = ()) -> str:
        """A user runs /name (e.g. "ask", or "qabot scope set": a command's subcommand) with
        `options`, typed as the synced command declares them: an attachment option takes
        (filename, bytes) or (filename, bytes, content_type), served by the fake's CDN route.
        Returns the interaction token."""
        path = name.split()
        command = next(c for c in self.commands if c["name"] == path[0])
        declared, nested = command.get("options") or [], []
        container = nested
        for sub in path[1:]:  # subcommand groups (type 2) and subcommands (type 1)
            option = next(o for o in declared if o["name"] == sub)
            entry = {"name": sub, "type": option["type"], "options": []}
            container.append(entry)
            container, declared = entry["options"], option.get("options") or []
        types = {o["name"]: o["type"] for o in declared}
        resolved: dict[str, dict] = {}
        for key, value in (options or {}).items():
            kind = types[key]
            if kind == 11:  # ATTACHMENT: the id, and the attachment in `resolved`
                attachment = self.attachment(*value)
                resolved.setdefault("attachments", {})[attachment["id"]] = attachment
                value = attachment["id"]
            container.append({"name": key, "type": kind, "value": value})
        data = {"id": str(command["id"]), "name": path[0], "type": 1, "options": nested if path[1:] else container}
        if resolved:
            data["resolved"] = resolved
        return await self._interaction(2, data, user_id=user_id, guild=guild, channel_id=channel_id,
                                       permissions=permissions, roles=roles)

    async def message_command(self, name: str, message: dict, *, user_id: int = 111, permissions: str = "0",
                              roles: list[int] = ()) -> str:
        """A user runs the message context menu command `name` (Apps → name) on `message`."""
        command = next(c for c in self.commands if c["name"] == name and c.get("type") == 3)
        data = {"id": str(command["id"]), "name": name, "type": 3, "target_id": message["id"],
                "resolved": {"messages": {message["id"]: message}}}
        return await self._interaction(2, data, user_id=user_id, guild=True, channel_id=int(message["channel_id"]),
                                       permissions=permissions, roles=roles)

    def attachment(self, filename: str, content: bytes, content_type: str | None = None) -> dict:
        """An uploaded file, served at its `url` on the fake's CDN route."""
        aid = str(snowflake())
        self.cdn[aid] = content
        return {"id": aid, "filename": filename, "size": len(content),
                "url": f"http://127.0.0.1:{self.port}/cdn/attachments/{aid}/{filename}",
                "proxy_url": f"http://127.0.0.1:{self.port}/cdn/attachments/{aid}/{filename}",
                **({"content_type": content_type} if content_type else {})}

    async def _cdn(self, request: web.Request) -> web.Response:
        self.cdn_requests.append(request.path)
        content = self.cdn.get(request.match_info["aid"])
        if content is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=content, headers={"Content-Type": "application/octet-stream"})

    async def click(self, message: dict, custom_id: str, *, user_id: int = 111) -> str:
        """A user clicks the button `custom_id` under `message` (as returned to the bot)."""
        data = {"custom_id": custom_id, "component_type": 2}
        channel_id = int(message["channel_id"])
        guild = self.channels.get(channel_id, {}).get("type") != 1
        return await self._interaction(3, data, user_id=user_id, guild=guild, channel_id=channel_id,
                                       message=message)

    async def submit_modal(self, shown_by: str, values: dict[str, str], *, user_id: int = 111) -> str:
        """A user submits the modal the bot showed in answer to the interaction `shown_by`, with
        `values` by text input custom_id (inputs not named are left empty)."""
        inter = self.interactions[shown_by]
        assert inter.modal is not None, "the bot showed no modal"

        def filled(component: dict) -> dict:
            if component.get("type") == 4:
                return {"type": 4, "custom_id": component["custom_id"], "value": values.get(component["custom_id"], "")}
            out = {"type": component["type"], "id": component.get("id", 0)}
            if "components" in component:
                out["components"] = [filled(c) for c in component["components"]]
            if "component" in component:
                out["component"] = filled(component["component"])
            return out

        data = {"custom_id": inter.modal["custom_id"], "components": [filled(c) for c in inter.modal["components"]]}
        channel = self.channels.get(inter.channel_id, {})
        return await self._interaction(5, data, user_id=user_id, guild=channel.get("type") != 1,
                                       channel_id=inter.channel_id)

    def text_inputs(self, shown_by: str) -> list[dict]:
        """The text inputs of the modal shown in answer to `shown_by`."""
        found = []

        def walk(component: dict) -> None:
            if component.get("type") == 4:
                found.append(component)
            for c in component.get("components") or []:
                walk(c)
            if component.get("component"):
                walk(component["component"])

        for c in self.interactions[shown_by].modal["components"]:
            walk(c)
        return found

    async def _interaction(self, kind: int, data: dict, *, user_id: int, guild: bool, channel_id: int,
                           permissions: str = "0", message: dict | None = None, roles: list[int] = ()) -> str:
        iid, token = snowflake(), f"itoken-{snowflake()}"
        u = user(user_id, f"user{user_id}")
        channel = self.channels.get(channel_id) or {"id": str(channel_id), "type": 1}
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(APP_ID), "type": kind, "data": data, "token": token,
            "version": 1, "channel_id": str(channel_id), "channel": channel, "locale": "en-US",
            "app_permissions": "1071698660929", "entitlements": [], "authorizing_integration_owners": {},
            "attachment_size_limit": 8 * 1024 * 1024, "context": 0 if guild else 1,
        }
        if guild:
            payload["guild_id"] = str(GUILD_ID)
            payload["guild_locale"] = "en-US"
            payload["member"] = {**member(u, permissions), "roles": [str(r) for r in roles]}
        else:
            payload["user"] = u
        if message is not None:
            payload["message"] = message
        self.interactions[token] = Interaction(iid, token, time.monotonic(), kind, data, channel_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return token

    async def forum_post(self, title: str, content: str, *, user_id: int = 111, forum_id: int = FORUM_ID,
                         mention_bot: bool = False) -> dict:
        """A user opens a post in a forum channel: a thread (THREAD_CREATE) whose first message
        has the thread's id, as in Discord. Returns the message."""
        thread_id = snowflake()
        thread = {
            "id": str(thread_id), "guild_id": str(GUILD_ID), "parent_id": str(forum_id), "owner_id": str(user_id),
            "name": title, "type": 11, "last_message_id": str(thread_id), "message_count": 1, "member_count": 1,
            "rate_limit_per_user": 0, "flags": 0, "applied_tags": [], "total_message_sent": 1,
            "thread_metadata": {"archived": False, "auto_archive_duration": 4320, "archive_timestamp": now_iso(),
                                "locked": False},
        }
        self.channels[thread_id] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return await self.message(content, user_id=user_id, channel_id=thread_id, mention_bot=mention_bot,
                                  message_id=thread_id)

    async def message(self, content: str, *, user_id: int = 111, channel_id: int = CHANNEL_ID,
                      mention_bot: bool = False, mention_roles: list[int] = (), dm: bool = False,
                      bot: bool = False, message_id: int | None = None, files: list[tuple] = ()) -> dict:
        """A user posts `content`; with `mention_bot` it starts with the bot's mention; `files`:
        (filename, bytes) attachments, served by the CDN route."""
        if mention_bot:
            content = f"<@{BOT_ID}> {content}"
        u = user(user_id, f"user{user_id}", bot=bot)
        data: dict[str, Any] = {
            "id": str(message_id or snowflake()), "channel_id": str(channel_id), "author": u, "content": content,
            "timestamp": now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": [{**BOT_USER, "member": member(BOT_USER)}] if mention_bot else [],
            "mention_roles": [str(r) for r in mention_roles], "attachments": [self.attachment(*f) for f in files],
            "embeds": [],
            "pinned": False, "type": 0, "flags": 0, "components": [],
        }
        if dm:
            self.channels.setdefault(channel_id, {"id": str(channel_id), "type": 1, "recipients": [u]})
        else:
            data["guild_id"] = str(GUILD_ID)
            data["member"] = {k: v for k, v in member(u).items() if k != "user"}
        self.messages[int(data["id"])] = data
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    # --- REST

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body = None
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "multipart/form-data":
                body = {"_multipart": True}
            elif raw:
                body = json.loads(raw)
        rec = Recorded(request.method, path, dict(request.query), body)
        self.requests.append(rec)
        if request.headers.get("Authorization") not in (f"Bot {self.token}", None):
            response = _error(401, 0, "401: Unauthorized")
        else:
            response = await self._route(request.method, path.rstrip("/").split("/")[1:], body or {}, request)
        rec.status = response.status
        if response.status >= 400:
            self.rejected.append((path, json.loads(response.body) if response.body else {}))
        return response

    async def _route(self, method: str, parts: list[str], body: dict, request: web.Request) -> web.Response:
        match method, parts:
            case "GET", ["users", "@me"]:
                if request.headers.get("Authorization") != f"Bot {self.token}":
                    return _error(401, 0, "401: Unauthorized")
                return _json(BOT_USER)
            case "GET", ["oauth2", "applications", "@me"]:
                return _json({"id": str(APP_ID), "name": "qabot", "icon": None, "description": "",
                              "bot_public": True, "bot_require_code_grant": False, "owner": user(1, "owner"),
                              "verify_key": "0" * 64, "flags": 0, "team": None, "summary": ""})
            case "GET", ["gateway", "bot"]:
                return _json({"url": self.gateway_url, "shards": 1, "session_start_limit":
                              {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})
            case "PUT", ["applications", app, "commands"]:
                self.commands = [self._command(c) for c in body]
                return _json(self.commands)
            case "PUT", ["applications", app, "guilds", guild_id, "commands"]:
                return _json([self._command(c, guild_id) for c in body])
            case "POST", ["interactions", iid, token, "callback"]:
                return self._callback(token, body)
            case "POST", ["webhooks", app, token]:
                return self._followup(token, body)
            case "PATCH", ["webhooks", app, token, "messages", message_id]:
                return self._edit_webhook_message(token, message_id, body)
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                return await self._edit_channel_message(int(channel_id), message_id, body)
            case "POST", ["channels", channel_id, "typing"]:
                return web.Response(status=204)
            case "POST", ["channels", channel_id, "messages"]:
                return await self._create_message(int(channel_id), body)
            case "POST", ["channels", channel_id, "messages", message_id, "threads"]:
                return await self._create_thread(int(channel_id), int(message_id), body)
        return _error(404, 0, "404: Not Found")

    def _command(self, c: dict, guild_id: str | None = None) -> dict:
        out = {**c, "id": str(snowflake()), "application_id": str(APP_ID), "version": str(snowflake()),
               "description": c.get("description", ""), "type": c.get("type", 1), "options": c.get("options", [])}
        if out.get("default_member_permissions") is not None:
            out["default_member_permissions"] = str(out["default_member_permissions"])
        if guild_id:
            out["guild_id"] = guild_id
        return out

    def _message_object(self, channel_id: int | None, payload: dict, *, webhook: bool = False) -> dict:
        mid = snowflake()
        message = {
            "id": str(mid), "channel_id": str(channel_id), "author": BOT_USER,
            "content": payload.get("content") or "", "timestamp": now_iso(), "edited_timestamp": None,
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": payload.get("embeds") or [], "components": payload.get("components") or [],
            "pinned": False, "type": 0, "flags": payload.get("flags", 0) or 0,
        }
        channel = self.channels.get(channel_id or 0)
        if channel and channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        if webhook:
            message["webhook_id"] = str(APP_ID)
            message["application_id"] = str(APP_ID)
        if payload.get("message_reference"):
            message["message_reference"] = payload["message_reference"]
            message["type"] = 19
        self.messages[mid] = message
        self.written[mid] = time.monotonic()
        return message

    def _invalid(self, payload: dict) -> web.Response | None:
        errors = message_errors(payload)
        if errors is None:
            return None
        if errors.get("_empty"):
            return _error(400, 50006, "Cannot send an empty message")
        return _error(400, 50035, "Invalid Form Body", errors)

    def _callback(self, token: str, body: dict) -> web.Response:
        inter = self.interactions.get(token)
        if inter is None or time.monotonic() - inter.created > self.ack_deadline:
            return _error(404, 10062, "Unknown interaction")
        if inter.acked:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind, data = body.get("type"), body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        if kind == 9:  # a modal: a title, a custom_id and 1-5 components
            if not data.get("custom_id") or not 1 <= len(data.get("title") or "") <= 45 or not 1 <= len(
                    data.get("components") or []) <= 5:
                return _error(400, 50035, "Invalid Form Body", {"data": {"_errors": [{"message": "bad modal"}]}})
            inter.modal = data
        if kind in (4, 7):
            if bad := self._invalid(data):
                return bad
            message = self._message_object(inter.channel_id, data, webhook=True)
            self.sent.append(Sent("callback", inter.channel_id, data, message, token))
            inter.original_id = int(message["id"])
            inter.message_ids.add(inter.original_id)
            resource["message"] = message
        inter.acked, inter.callback_type = True, kind
        return _json({
            "interaction": {"id": str(inter.id), "type": inter.kind, "response_message_loading": kind == 5,
                            "response_message_ephemeral": bool((data.get("flags") or 0) & 64)},
            "resource": resource,
        })

    def _followup(self, token: str, body: dict) -> web.Response:
        inter = self.interactions.get(token)
        if inter is None or not inter.acked:
            return _error(404, 10015, "Unknown Webhook")
        if bad := self._invalid(body):
            return bad
        message = self._message_object(inter.channel_id, body, webhook=True)
        self.sent.append(Sent("followup", inter.channel_id, body, message, token))
        inter.message_ids.add(int(message["id"]))
        if inter.original_id is None and inter.callback_type == 5:  # it replaces "… is thinking"
            inter.original_id = int(message["id"])
        return _json(message)

    def _edit_webhook_message(self, token: str, message_id: str, body: dict) -> web.Response:
        inter = self.interactions.get(token)
        if inter is None or not inter.acked:
            return _error(404, 10015, "Unknown Webhook")
        if message_id == "@original" and inter.original_id is None:
            errors = message_errors(body, creating=False)
            if errors:
                return _error(400, 50035, "Invalid Form Body", errors)
            message = self._message_object(inter.channel_id, body, webhook=True)
            self.sent.append(Sent("original", inter.channel_id, body, message, token))
            inter.original_id = int(message["id"])
            inter.message_ids.add(inter.original_id)
            return _json(message)
        mid = inter.original_id if message_id == "@original" else int(message_id)
        if mid not in inter.message_ids or mid not in self.messages:
            return _error(404, 10008, "Unknown Message")
        return self._edit(self.messages[mid], body, token)

    async def _edit_channel_message(self, channel_id: int, message_id: str, body: dict) -> web.Response:
        if channel_id not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != str(channel_id):
            return _error(404, 10008, "Unknown Message")
        if message["author"]["id"] != str(BOT_ID):
            return _error(403, 50005, "Cannot edit a message authored by another user")
        response = self._edit(message, body)
        if response.status == 200:  # real Discord tells every client, the author included
            asyncio.get_running_loop().create_task(self.dispatch("MESSAGE_UPDATE", message))
        return response

    def _edit(self, message: dict, body: dict, token: str | None = None) -> web.Response:
        """Apply a PATCH to `message` in place, with Discord's checks: limits, not left empty,
        and (with `edit_interval`) not written again too soon."""
        mid = int(message["id"])
        since = time.monotonic() - self.written.get(mid, float("-inf"))
        if since < self.edit_interval:
            retry = round(self.edit_interval - since, 3)
            return web.Response(
                status=429, headers={"Content-Type": "application/json", "Via": "1.1 google"},
                body=json.dumps({"message": "You are being rate limited.", "retry_after": retry,
                                 "global": False}).encode())
        errors = message_errors(body, creating=False)
        if errors:
            return _error(400, 50035, "Invalid Form Body", errors)
        after = dict(message)
        for key in ("content", "embeds", "components"):
            if key in body:
                after[key] = body[key] or ("" if key == "content" else [])
        if (message_errors(after) or {}).get("_empty"):
            return _error(400, 50006, "Cannot send an empty message")
        after["edited_timestamp"] = now_iso()
        message.update(after)
        self.written[mid] = time.monotonic()
        channel_id = int(message["channel_id"]) if message.get("channel_id") not in (None, "None") else None
        self.edits.append(Edited(mid, channel_id, body, json.loads(json.dumps(message)), token))
        return _json(message)

    async def _create_message(self, channel_id: int, body: dict) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if bad := self._invalid(body):
            return bad
        message = self._message_object(channel_id, body)
        self.sent.append(Sent("channel", channel_id, body, message))
        # Real Discord echoes the bot's own message back over the gateway.
        asyncio.get_running_loop().create_task(self.dispatch("MESSAGE_CREATE", message))
        return _json(message)

    async def _create_thread(self, channel_id: int, message_id: int, body: dict) -> web.Response:
        parent = self.channels.get(channel_id)
        if parent is None or parent["type"] != 0:
            return _error(404, 10003, "Unknown Channel")
        name = body.get("name") or ""
        if not 1 <= len(name) <= 100:
            return _error(400, 50035, "Invalid Form Body",
                          {"name": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH",
                                                 "message": "Must be between 1 and 100 in length."}]}})
        if message_id in {int(c["id"]) for c in self.channels.values()}:
            return _error(400, 160004, "A thread has already been created for this message")
        thread = {
            "id": str(message_id), "guild_id": str(GUILD_ID), "parent_id": str(channel_id),
            "owner_id": str(BOT_ID), "name": name, "type": 11, "last_message_id": None,
            "message_count": 0, "member_count": 1, "rate_limit_per_user": 0, "flags": 0,
            "thread_metadata": {"archived": False, "auto_archive_duration": body.get("auto_archive_duration", 1440),
                                "archive_timestamp": now_iso(), "locked": False},
            "total_message_sent": 0,
        }
        self.channels[message_id] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, 201)

    @staticmethod
    def _text_channel(channel_id: int, name: str) -> dict:
        return {"id": str(channel_id), "type": 0, "guild_id": str(GUILD_ID), "name": name, "position": 0,
                "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0}
