"""Discord front end: slash commands, mentions and threads over the shared `answer()` path.

Start it with `qabot discord`; the pieces are `client.run_bot` (the thin client), the cogs
`ask_cog` and `admin_cog`, `render` (Answer → messages within Discord's limits), `stream` (an LLM
answer shown as it is written, in one message edited in place) and `ratelimit`.
"""
