"""Discord front end: slash commands, mentions, threads and forum posts over the shared
`QA.answer()` path, one QA per scope (a named document collection).

Start it with `qabot discord` (command.py). `client.QABot` is the thin client: it is given the
library of scopes (`library.py`: each scope's QA loaded once, one shared embedder; documents
added and removed) and the config, and keeps which scope answers where (`scopes.py`, SQLite);
it loads the cogs in `setup_hook`. `cogs/ask.py` (/ask, mentions, threads, forum posts, DMs) and
`cogs/admin.py` (/reindex, /qabot: scopes, enable/disable, add/remove/sources, every command
permission-checked in one place) reach them through the bot they are given. `views.py` holds
the 👍/👎 (reason modal) and "Still need help?" buttons, `uploads.py` checks files given to
/qabot add, `render.py` turns an Answer into messages within Discord's limits (with source
links), `stream.py` shows an LLM answer as it is written, and `ratelimit.py` limits questions
per user.
"""
