"""Discord front end: slash commands, mentions and threads over the shared `QA.answer()` path.

Start it with `qabot discord` (command.py). `client.QABot` is the thin client: it is given the
answer, stream and reindex functions and the config, and loads the cogs in `setup_hook`;
`cogs/ask.py` (/ask, mentions, threads, DMs) and `cogs/admin.py` (/reindex) reach them through
the bot they are given. `views.py` holds the 👍/👎 buttons, `render.py` turns an Answer into
messages within Discord's limits, `stream.py` shows an LLM answer as it is written, and
`ratelimit.py` limits questions per user.
"""
