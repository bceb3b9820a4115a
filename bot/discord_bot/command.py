"""`qabot discord`: the bot process. It opens the scope settings and the library of scopes (the
default one is the corpus/index given here) and hands them to the client (client.py)."""
from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

import click

from bot.cli.options import CONTEXT, k_option, llm_option, location_options, make_settings
from bot.config import DiscordConfig, load_dotenv
from bot.errors import QabotError, one_line

DISCORD_API = "https://discord.com/api/v10"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(code)


@click.command("discord", context_settings=CONTEXT)
@location_options
@k_option
@llm_option
@click.option("-v", "--verbose", is_flag=True, help="Log discord.py's own messages too.")
def discord_command(corpus, index_dir, chroma_url, k, llm, verbose: bool) -> None:
    """Run the Discord bot (Ctrl-C or SIGTERM stops it).

    \b
    Set-up, once (README, section "Discord bot", has the details):
      1. https://discord.com/developers/applications -> New Application;
         Bot tab -> Reset Token: that token is DISCORD_TOKEN (keep it secret).
      2. Bot tab -> Privileged Gateway Intents -> enable Message Content Intent
         (to answer follow-ups in threads without a mention; or set
         QABOT_DISCORD_MESSAGE_CONTENT=0).
      3. OAuth2 -> URL Generator: scopes "bot" and "applications.commands";
         permissions View Channels, Send Messages, Send Messages in Threads,
         Create Public Threads, Embed Links, Read Message History
         (integer 309237730304); open the URL and pick your server.
      4. DISCORD_TOKEN=... in the environment or in a .env file here,
         `qabot ingest`, then `qabot discord`.

    Other settings, from the environment: QABOT_ALLOWED_GUILDS, QABOT_ALLOWED_CHANNELS,
    QABOT_RATE_LIMIT (default 5/60), QABOT_DISCORD_DMS, QABOT_DISCORD_MESSAGE_CONTENT,
    QABOT_FEEDBACK_DB, DISCORD_API_BASE, DISCORD_GATEWAY_URL.

    For a community (README, "Running the bot for a community"): scopes live in
    QABOT_SCOPES_DIR (default scopes/) and are set per channel with /qabot;
    QABOT_ADMIN_ROLES (besides Manage Server), QABOT_SUPPORT_CHANNEL and
    QABOT_SUPPORT_ROLE ("Still need help?"), QABOT_MAX_UPLOAD_MB (default 8),
    QABOT_SOURCE_URL (the default scope's source links).

    With --llm (or QABOT_LLM) answers are written by the chat model and appear as they are
    written, then are replaced by the verified answer. /reindex re-syncs the index with its
    corpus folder, but never removes the documents of an index built from another folder, nor
    most of an index's documents: `qabot ingest` does that.
    """
    load_dotenv(Path.cwd() / ".env")
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        _fail("DISCORD_TOKEN is not set (environment or a .env file in the working directory).")

    try:
        config = DiscordConfig.from_env()
        if config.source_url:
            from bot.source_links import check_template

            check_template(config.source_url)
        settings = make_settings(corpus, index_dir, chroma_url, k=k, llm=llm)
    except QabotError as e:
        _fail(str(e))

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot").setLevel(logging.INFO)

    # Imported here: discord.py and the pipeline cost ~2 s of start-up the other commands never need.
    import aiohttp
    import discord

    from bot.discord_bot.client import StartupError, run_bot
    from bot.discord_bot.library import Library
    from bot.discord_bot.scopes import DEFAULT_SCOPE, open_scope_store

    try:
        open_scope_store(config.feedback_db.with_name("scopes.sqlite3"))  # a damaged file: one line, now
    except QabotError as e:
        _fail(str(e))
    # Every scope's QA, loaded once on first use, sharing one embedder; the default scope is the
    # corpus/index given here (loaded at start-up, as before scopes existed).
    library = Library(settings, config.scopes_dir, make_qa=_checked_qa)
    stream_fn = functools.partial(library.stream, DEFAULT_SCOPE) if settings.llm else None

    api = (config.api_base or DISCORD_API).rstrip("/")
    try:
        # QA builds the LLM answerer whenever settings.llm is set (or fails to start): stream then.
        run_bot(token, library, functools.partial(library.reindex, DEFAULT_SCOPE), config,
                warm_up=library.warm_up, stream_fn=stream_fn)
    except discord.LoginFailure:
        _fail("Discord rejected the token (401 Unauthorized): check DISCORD_TOKEN.")
    except discord.PrivilegedIntentsRequired:
        _fail("the Message Content intent is not enabled for this application: enable it in the Developer "
              "Portal (Bot → Privileged Gateway Intents) or set QABOT_DISCORD_MESSAGE_CONTENT=0.")
    except discord.HTTPException as e:  # Discord answered, with an error (it is down, or rate limits us)
        _fail(f"Discord at {api} answered {e.status} ({one_line(e)}); try again later.")
    except (aiohttp.ClientError, OSError, TimeoutError) as e:  # no route: DNS, refused, TLS, time-out
        _fail(f"cannot reach Discord at {api} ({one_line(e)}); check the network connection"
              f"{' and DISCORD_API_BASE' if config.api_base else ''}.")
    except StartupError as e:
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        cause = e.__cause__
        if isinstance(cause, QabotError):
            _fail(str(cause))
        _fail(f"could not load the question-answering pipeline: {e}", code=1)


def _checked_qa(name, settings, embedder):
    """library.open_qa, its warnings (vectors partly missing) on stderr."""
    from bot.discord_bot.library import open_qa

    return open_qa(name, settings, embedder, warn=lambda line: click.echo(f"Warning: {line}", err=True))


def reindex(settings) -> str:
    """What /reindex does for a bot with one corpus: re-sync the index with it (library.Library.reindex)."""
    from bot.discord_bot.library import Library
    from bot.discord_bot.scopes import DEFAULT_SCOPE

    return Library(settings, Path("scopes")).reindex(DEFAULT_SCOPE)
