"""`qabot ask`: one answer (or one per line of standard input), for people or, with --json, scripts."""
from __future__ import annotations

import functools
import json
import sys

import click

from bot.cli.options import CONTEXT, k_option, llm_option, location_options, make_settings
from bot.cli.pipeline import open_qa
from bot.cli.terminal import make_console, print_answer
from bot.config import source_url_template
from bot.errors import QuestionError
from bot.qa.question import clean_question
from bot.source_links import check_template, source_url

# The pipeline (Chroma, numpy, the embedding runtime) is imported inside the commands that use it:
# importing it costs ~1.3 s, and `qabot --help` or a mistyped flag should answer at once.
@click.command(context_settings=CONTEXT)
@click.argument("question", required=True)
@location_options
@k_option
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (with `-` as QUESTION: one JSON line per input line).")
@llm_option
def ask(question, corpus, index_dir, chroma_url, k, as_json, llm):
    """Answer QUESTION from the documents, citing the passages it came from.

    \b
    QUESTION "-" reads questions from standard input, one per line, and answers
    each in turn (the model loads once):
      printf 'when?\\nwho?\\n' | qabot ask --json -

    If the index is missing or the corpus changed, ask ingests first. With QABOT_SOURCE_URL
    (e.g. https://docs.python.org/3/{path_without_suffix}.html#{section_anchor}) each
    source is followed by its public page ("url" in --json).
    """
    settings = make_settings(corpus, index_dir, chroma_url, k=k, llm=llm)
    template = source_url_template()
    link = functools.partial(source_url, check_template(template)) if template else None
    if question != "-":
        clean_question(question)  # fail fast, before loading anything
    qa = open_qa(settings, quiet=as_json)
    piped = question == "-"
    questions = (line.rstrip("\n") for line in sys.stdin) if piped else [question]
    console = make_console()
    for q in questions:
        if piped and not q.strip():
            continue
        try:
            answer = qa.answer(q)
        except QuestionError as exc:
            if as_json:
                click.echo(json.dumps({"question": q, "error": str(exc)}, ensure_ascii=False))
            else:
                console.print(f"[red]{exc}[/]")
            continue
        if as_json:
            click.echo(json.dumps(answer_json(answer, link), ensure_ascii=False))
            sys.stdout.flush()  # one line per question as it is answered, for scripts
            continue
        if piped:
            console.print(f"[bold]Q:[/] {q}")
        print_answer(console, answer, link=link)
        if piped:
            console.print()


def answer_json(answer, link=None) -> dict:
    """The documented `ask --json` object (each citation's "url" with a source link template)."""
    result = {
        "question": answer.question,
        "answer": answer.text,
        "refused": answer.refused,
        "answerer": answer.answerer,
        "fallback_reason": answer.fallback_reason,  # why the configured LLM's answer was not used
        "standalone_question": answer.standalone_question,
        "citations": [
            {"n": c.n, "source": c.source, "title": c.title, "section": c.section, "page": c.page,
             "quote": c.quote, "start": c.start, "end": c.end, "score": c.score,
             "span_start": c.span_start, "span_end": c.span_end}
            for c in answer.citations
        ],
        "timings_ms": answer.timings_ms,
    }
    if link is not None:
        for c, out in zip(answer.citations, result["citations"]):
            out["url"] = link(c)
    return result
