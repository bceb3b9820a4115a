"""Follow-up questions: turn "who replaced him?" into a query that stands on its own.

One implementation for every conversation (chat sessions, Discord threads). With an LLM
configured the LLM rewrites the question; without one, this documented rule does:

  A question is a follow-up when it leans on the conversation: it contains a pronoun or
  demonstrative (he, she, it, they, him, her, them, his, its, their, this, that, these, those,
  there, then), starts with a continuation ("and", "what about", "how about", "also", "why?"),
  or has at most one content word. A follow-up is expanded with the previous question and the
  names (capitalised words) in the previous answer; anything else is left as asked.

The LLM's rewrite is used only where it agrees with this rule (`disagreement`): it keeps every
content word of the question, names no one the conversation did not, and names someone of the
last exchange. A 0.5B model turned "who did he replace?" (after "Borisov heads Roscosmos") into
"Who was Borisov's successor?", the opposite question; the rule keeps "replace".
"""
from __future__ import annotations

import re

from bot.schema import Turn
from bot.text import STOPWORDS, strip_markers, tokenize

_REFERRING = re.compile(
    r"\b(he|she|it|they|him|her|them|his|hers|its|their|theirs|this|that|these|those|there|then"
    r"|the same|the former|the latter)\b",
    re.I,
)
_CONTINUATION = re.compile(r"^\s*(and|but|so|also|what about|how about|why|when|where|who|how)\b[\s?!.]*$|"
                           r"^\s*(and|but|also|what about|how about)\b", re.I)
_NAME = re.compile(r"\b[A-Z][a-zA-Z]{2,}(?:\s+[A-Z][a-zA-Z]+)*\b")


def is_follow_up(question: str) -> bool:
    return bool(_REFERRING.search(question) or _CONTINUATION.search(question) or len(tokenize(question)) <= 1)


def _names(text: str) -> set[str]:
    """Lower-cased capitalised words and phrases, the first word of the text excepted unless it
    is capitalised again later."""
    text = strip_markers(text)
    found = {m.lower() for m in _NAME.findall(text)}
    first = re.match(r"\W*([A-Z][a-zA-Z]+)", text)
    if first and first.group(1).lower() in found and text.count(first.group(1)) == 1:
        found.discard(first.group(1).lower())
    return {n for n in found if n not in STOPWORDS}


def disagreement(question: str, rewritten: str, history: list[Turn]) -> str | None:
    """Why an LLM's standalone rewrite of `question` cannot be trusted, or None when it agrees
    with the conversation: it keeps the question's content words (stemmed), every name in it was
    said in the question or the conversation, and it names someone of the last exchange."""
    kept = set(tokenize(rewritten))
    lost = [w for w in tokenize(question) if w not in kept]
    if lost:
        return f"it dropped {', '.join(lost)}"
    said = " ".join([question] + [f"{t.question} {t.answer}" for t in history]).lower()
    invented = [n for n in _names(rewritten) if n not in said]
    if invented:
        return f"it names {', '.join(sorted(invented))}, which the conversation does not"
    last = _names(f"{history[-1].question} {history[-1].answer}") | set(tokenize(history[-1].question))
    if is_follow_up(question) and _REFERRING.search(question) and not (
            {n for n in _names(rewritten)} & last or set(tokenize(rewritten)) & {t for n in last for t in tokenize(n)}):
        return "it names no one of the last exchange"
    return None


def condense(question: str, history: list[Turn] | None) -> str:
    """The standalone query for `question`, given earlier turns (most recent last)."""
    if not history or not is_follow_up(question):
        return question
    last = history[-1]
    names: list[str] = []
    for name in _NAME.findall(strip_markers(last.answer)):
        key = name.lower()
        if key in STOPWORDS or key in last.question.lower() or key in {n.lower() for n in names}:
            continue
        names.append(name)
    context = " ".join([last.question.strip()] + names[:2])
    return f"{question.strip()} ({context})"
