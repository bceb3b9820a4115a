"""Follow-up questions: turn "who replaced him?" into a query that stands on its own.

One implementation for every conversation (chat sessions, Discord threads). With an LLM
configured the LLM rewrites the question; without one, this documented rule does:

  A question is a follow-up when it leans on the conversation: it contains a pronoun or
  demonstrative (he, she, it, they, him, her, them, his, its, their, this, that, these, those,
  there, then), starts with a continuation ("and", "what about", "how about", "also", "why?"),
  or has at most one content word. A follow-up is expanded with the previous question and the
  names (capitalised words) in the previous answer; anything else is left as asked.
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
