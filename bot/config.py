"""All settings in one place: defaults, then environment variables (and a `.env` file), then
command-line flags. This is the only module that reads QABOT_* variables; everything else is
handed the values. A value that cannot be used is a `SettingError` naming the variable.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from bot.errors import SettingError

# Chunking defaults, measured on the gold sets (README "Answer quality"): on the Python-docs set
# 1000/150 beat 500/80, 800/120 and 1200/180 on recall@5, MRR and answer accuracy, and on the ISS
# set it beat 800/120. About the embedding model's 256-token window for prose.
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_CHUNK_OVERLAP = 150

# Environment variable for each setting that can come from the environment.
ENV_NAMES = {
    "corpus": "QABOT_CORPUS",
    "index": "QABOT_INDEX",
    "chroma_url": "QABOT_CHROMA_URL",
    "chroma_token": "QABOT_CHROMA_TOKEN",
    "collection": "QABOT_COLLECTION",
    "chunk_size": "QABOT_CHUNK_SIZE",
    "chunk_overlap": "QABOT_CHUNK_OVERLAP",
    "precision": "QABOT_PRECISION",
    "k": "QABOT_K",
    "llm": "QABOT_LLM",
    "llm_timeout": "QABOT_LLM_TIMEOUT",
}


@dataclass(frozen=True)
class Settings:
    corpus: Path = Path("corpus")
    index: Path = Path("index")
    chroma_url: str | None = None  # None: embedded Chroma under `index`; else a Chroma server
    chroma_token: str | None = field(default=None, repr=False)  # sent as "Authorization: Bearer …"
    collection: str = "qabot"
    # None: what the index was built with (so `ask` never re-chunks an index), else the default.
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    precision: str = "auto"  # embedding precision: auto (the fastest measured on this CPU), bf16, fp32, int8, int8-static
    k: int = 5  # passages handed to the answerer
    llm: str | None = None  # PROVIDER:MODEL of an optional chat model
    llm_timeout: float = 60.0  # seconds before an LLM answer is abandoned for the extractive one

    def __post_init__(self) -> None:
        for name, low, high in (("chunk_size", 100, 8000), ("chunk_overlap", 0, 4000), ("k", 1, 50)):
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise SettingError(f"{_described(name)} must be between {low} and {high}, got {value}")
        check_chunking(self.chunk_size, self.chunk_overlap)
        if not (isinstance(self.llm_timeout, (int, float)) and 0 < self.llm_timeout < float("inf")):
            raise SettingError(f"{_described('llm_timeout')} must be a positive number of seconds, "
                               f"got {self.llm_timeout!r}")
        if self.precision not in ("auto", "bf16", "fp32", "int8", "int8-static"):
            raise SettingError(f"{_described('precision')} must be auto, bf16, fp32, int8 or int8-static, "
                               f"got {self.precision!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults < environment < explicit overrides (flags); None overrides are ignored."""
        env = os.environ if env is None else env
        values: dict = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, variable in ENV_NAMES.items():
            raw = env.get(variable)
            if raw:
                values[name] = _convert(types[name], raw, variable)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus", "index"):
            if name in values:
                values[name] = Path(values[name])
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


def check_chunking(size: int | None, overlap: int | None) -> None:
    """Neighbouring chunks must share less than a whole chunk (else the splitter never advances).
    Checked when both are known: here when both are set, and by the ingest once the index's own
    values fill in what was not given."""
    if size is not None and overlap is not None and overlap >= size:
        raise SettingError(f"{_described('chunk_overlap')} must be smaller than the chunk size ({size}), "
                           f"got {overlap}")


# Settings that only come from the environment (no command has a flag for them).
NO_FLAG = {"chroma_token", "collection", "precision", "llm_timeout"}


def _described(name: str) -> str:
    """A setting as the user meets it: "chunk size (--chunk-size, QABOT_CHUNK_SIZE)", or
    "precision (QABOT_PRECISION)" for one without a flag."""
    flag = "" if name in NO_FLAG else f"--{name.replace('_', '-')}, "
    return f"{name.replace('_', ' ')} ({flag}{ENV_NAMES[name]})"


def _convert(type_name: str, raw: str, variable: str):
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise SettingError(f"{variable} must be a number, got {raw!r}") from None
    return raw


# --- on/off switches ----------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def flag(value: str | None, default: bool, name: str) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off; unset or empty is `default`."""
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise SettingError(f"{name} must be 1/0 (true/false), got {value!r}")


def switch(name: str, default: bool = True, env: Mapping[str, str] | None = None) -> bool:
    """The on/off environment variable `name`."""
    return flag((os.environ if env is None else env).get(name), default, name)


# --- where files go -----------------------------------------------------------------------------

def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where derived model files go: $QABOT_CACHE, else $XDG_CACHE_HOME/qabot, else ~/.cache/qabot."""
    env = os.environ if env is None else env
    if env.get("QABOT_CACHE"):
        return Path(env["QABOT_CACHE"])
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "qabot"


def history_path(env: Mapping[str, str] | None = None) -> Path:
    """Where chat's prompt history is kept: $QABOT_HISTORY_FILE, else the user state directory."""
    env = os.environ if env is None else env
    if env.get("QABOT_HISTORY_FILE"):
        return Path(env["QABOT_HISTORY_FILE"]).expanduser()
    state = env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "qabot" / "history"


DEFAULT_FEEDBACK_DB = Path("index") / "feedback.sqlite3"


def source_url_template(env: Mapping[str, str] | None = None) -> str | None:
    """`QABOT_SOURCE_URL`: the public address of a cited document, e.g.
    https://docs.python.org/3/{path_without_suffix}.html#{section_anchor} (bot/source_links.py
    lists the fields); None when unset: citations then name files only."""
    env = os.environ if env is None else env
    return (env.get("QABOT_SOURCE_URL") or "").strip() or None


def feedback_db_path(env: Mapping[str, str] | None = None) -> Path:
    """`QABOT_FEEDBACK_DB` if set, else index/feedback.sqlite3 (relative to the working directory)."""
    env = os.environ if env is None else env
    return Path(env.get("QABOT_FEEDBACK_DB") or DEFAULT_FEEDBACK_DB)


def load_dotenv(path: Path) -> None:
    """Load KEY=VALUE lines from `path` into the environment, without overriding what is set."""
    if path.is_file():
        import dotenv  # python-dotenv; only the Discord bot reads a .env file

        dotenv.load_dotenv(path, override=False)


# --- the Discord bot ----------------------------------------------------------------------------

def parse_rate_limit(spec: str) -> tuple[int, float]:
    """Parse "5/60" (5 calls per 60 seconds). "0" or "" disables the limit (returns (0, 0))."""
    spec = spec.strip()
    if spec in ("", "0", "off", "none"):
        return 0, 0.0
    calls, sep, seconds = spec.partition("/")
    try:
        max_calls, per = int(calls), float(seconds) if sep else 60.0
    except ValueError:
        raise SettingError(f"invalid rate limit {spec!r}: expected CALLS/SECONDS, e.g. 5/60") from None
    if max_calls < 0 or per <= 0:
        raise SettingError(f"invalid rate limit {spec!r}: expected CALLS/SECONDS, e.g. 5/60")
    return max_calls, per


def _id(value: str | None, name: str) -> int | None:
    ids = _ids(value or "", name)
    if len(ids) > 1:
        raise SettingError(f"{name} must be one numeric id, got {value!r}")
    return next(iter(ids), None)


def _ids(value: str, name: str) -> frozenset[int]:
    try:
        return frozenset(int(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise SettingError(f"{name} must be comma-separated numeric ids, got {value!r}") from None


def _megabytes(value: str | None, default: float, name: str) -> int:
    try:
        mb = float(value) if value and value.strip() else default
    except ValueError:
        raise SettingError(f"{name} must be a number of megabytes, got {value!r}") from None
    if not 0 < mb <= 500:
        raise SettingError(f"{name} must be between 0 and 500 megabytes, got {value!r}")
    return int(mb * 1024 * 1024)


@dataclass
class DiscordConfig:
    """Everything the Discord front end can be configured with; `from_env` is the one place it is read."""

    allowed_guilds: frozenset[int] = frozenset()  # empty: every guild
    allowed_channels: frozenset[int] = frozenset()  # empty: every channel (threads count as their parent)
    answer_dms: bool = True
    rate_limit: tuple[int, float] = (5, 60.0)  # questions per seconds, per user; (0, 0) disables
    feedback_db: Path = field(default_factory=lambda: DEFAULT_FEEDBACK_DB)
    api_base: str | None = None  # e.g. http://127.0.0.1:8080/api/v10; None: real Discord
    gateway_url: str | None = None  # e.g. ws://127.0.0.1:8080/; None: real Discord
    message_content: bool = True  # privileged intent: needed to answer thread follow-ups without a mention
    history_turns: int = 6  # earlier Q/A of a thread passed along with a follow-up
    sync_commands: bool = True
    guild_ready_timeout: float = 2.0
    vote_timeout: float = 24 * 3600.0  # how long an answer's 👍/👎 view stays in memory (clicks after that,
    # or after a restart, are still recorded: the answer is in the feedback store for 90 days)
    # Communities (README "Running the bot for a community"): scopes other than the default one
    # (the corpus/index of Settings) live in scopes_dir/NAME/{corpus,index}.
    scopes_dir: Path = Path("scopes")
    admin_roles: frozenset[int] = frozenset()  # besides Manage Server, who may run /qabot
    support_channel: int | None = None  # where "Still need help?" posts the question
    support_role: int | None = None  # the role it pings (the only mention the bot ever makes)
    max_upload_bytes: int = 8 * 1024 * 1024  # per file given to /qabot add
    source_url: str | None = None  # the default scope's source link template (QABOT_SOURCE_URL)
    progress_interval: float = 1.0  # seconds between two edits of the /qabot add progress message

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DiscordConfig":
        env = os.environ if env is None else env
        return cls(
            allowed_guilds=_ids(env.get("QABOT_ALLOWED_GUILDS", ""), "QABOT_ALLOWED_GUILDS"),
            allowed_channels=_ids(env.get("QABOT_ALLOWED_CHANNELS", ""), "QABOT_ALLOWED_CHANNELS"),
            answer_dms=flag(env.get("QABOT_DISCORD_DMS"), True, "QABOT_DISCORD_DMS"),
            rate_limit=parse_rate_limit(env.get("QABOT_RATE_LIMIT", "5/60")),
            feedback_db=feedback_db_path(env),
            api_base=env.get("DISCORD_API_BASE") or None,
            gateway_url=env.get("DISCORD_GATEWAY_URL") or None,
            message_content=flag(env.get("QABOT_DISCORD_MESSAGE_CONTENT"), True, "QABOT_DISCORD_MESSAGE_CONTENT"),
            scopes_dir=Path(env.get("QABOT_SCOPES_DIR") or "scopes"),
            admin_roles=_ids(env.get("QABOT_ADMIN_ROLES", ""), "QABOT_ADMIN_ROLES"),
            support_channel=_id(env.get("QABOT_SUPPORT_CHANNEL"), "QABOT_SUPPORT_CHANNEL"),
            support_role=_id(env.get("QABOT_SUPPORT_ROLE"), "QABOT_SUPPORT_ROLE"),
            max_upload_bytes=_megabytes(env.get("QABOT_MAX_UPLOAD_MB"), 8, "QABOT_MAX_UPLOAD_MB"),
            source_url=source_url_template(env),
        )

    def allows(self, guild_id: int | None, channel_id: int | None, parent_id: int | None = None) -> bool:
        """Whether the bot may answer here. DMs (no guild) depend on `answer_dms` only."""
        if guild_id is None:
            return self.answer_dms
        if self.allowed_guilds and guild_id not in self.allowed_guilds:
            return False
        return not self.allowed_channels or bool({channel_id, parent_id} & self.allowed_channels)
