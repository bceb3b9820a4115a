"""`qabot ingest` and `qabot stats`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bot.cli.options import CONTEXT, UserError, location_options, make_settings
from bot.cli.pipeline import run_ingest

# The pipeline (Chroma, numpy, the embedding runtime) is imported inside the commands that use it:
# importing it costs ~1.3 s, and `qabot --help` or a mistyped flag should answer at once.
@click.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@location_options
@click.option("--rebuild", is_flag=True,
              help="Start the index over (also a damaged one: only qabot's own files in the index folder "
                   "are deleted) and embed everything again.")
@click.option("--yes", "-y", is_flag=True,
              help="Remove documents that are gone from the corpus even when that is all or most of the index "
                   "(otherwise asked on a terminal, refused without one).")
@click.option("--chunk-size", type=int, default=None,
              help="Characters per chunk, 100–8000 (default 1000, or what the index was built with). "
                   "[env: QABOT_CHUNK_SIZE]")
@click.option("--chunk-overlap", type=int, default=None,
              help="Characters shared by neighbouring chunks, 0–4000 (default 150, or the index's). "
                   "[env: QABOT_CHUNK_OVERLAP]")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line and problems.")
@click.option("--watch", is_flag=True,
              help="After indexing, keep re-indexing files as they change (one line per batch) until Ctrl-C.")
def ingest(paths, corpus, index_dir, chroma_url, rebuild, yes, chunk_size, chunk_overlap, quiet, watch):
    """Index documents (default: the whole corpus folder).

    Incremental: unchanged files are skipped without embedding, changed files replace their
    chunks, deleted files lose theirs. Supports .txt .md .rst .html .htm .pdf.

    An ingest that would remove every document of the index, or more than half of them (an
    empty or different corpus folder), asks first on a terminal and is refused without one:
    use --rebuild to start over from this corpus, or --yes. A corpus with nothing to index is
    an error (exit 2).
    """
    settings = make_settings(corpus, index_dir, chroma_url, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    run_ingest(settings, list(paths) or None, rebuild=rebuild, quiet=quiet,
               confirm_removal=None if yes else confirm_removal)
    if watch:
        from bot.ingest.watch import watch as watch_corpus

        watch_corpus(settings, list(paths) or None)


def confirm_removal(removal) -> bool:
    """Before an ingest removes every document of the index or most of them: y/N on a terminal;
    without one, refused with the two ways to do it."""
    from bot.errors import RemovalRefused

    if sys.stdin.isatty() and sys.stderr.isatty():
        question = removal.describe()
        try:
            return click.confirm(f"{question[0].upper()}{question[1:]}. Remove them?", default=False, err=True)
        except click.Abort:  # Ctrl-C or Ctrl-D at the question: no
            return False
    raise RemovalRefused(f"{removal.describe()}; nothing removed. Run `qabot ingest --rebuild` to start the index "
                         "over from this corpus, or add --yes to remove them")


@click.command(context_settings=CONTEXT)
@location_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(corpus, index_dir, chroma_url, as_json):
    """Show what the index holds: documents, chunks, size, embedding model.

    Says so (on stderr) when the vector store lacks chunks the index lists; `qabot ingest`
    embeds them again.
    """
    from bot.ingest.status import IndexState, index_exists, lacking, stats as read_stats, unusable
    from bot.store.chroma import VectorStore

    settings = make_settings(corpus, index_dir, chroma_url)
    if settings.chroma_url:
        VectorStore(settings)  # an unreachable server is the first thing to report
    if not index_exists(settings):
        where = settings.chroma_url or settings.index
        raise UserError(f"no index at {where}; run `qabot ingest` first")
    info = read_stats(settings)
    state = IndexState(info["documents"], info["manifest_chunks"], info["chunks"], info["corpus"])
    problem = (unusable(settings, state) if state.stored == 0 and state.chunks else None) or lacking(settings, state)
    if problem:
        click.echo(f"Warning: {problem}", err=True)
    if as_json:
        click.echo(json.dumps(info))
        return
    size = info["index_bytes"]
    rows = [
        ("Documents", info["documents"]),
        ("Chunks", info["chunks"]),
        ("Index", info["chroma_url"] or info["index"]),
        ("Corpus", info["corpus"] or "-"),
        ("Index size", f"{size / 1e6:.1f} MB" if size is not None else "(server)"),
        ("Embedding model", f"{info['embedding_model']} ({info['precision']})" if info["embedding_model"]
         else "none yet: the first ingest did not finish (run `qabot ingest`)"),
        ("Chunking", f"{info['chunking']['size']} chars, {info['chunking']['overlap']} overlap"
         if info["chunking"] else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
