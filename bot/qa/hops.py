"""Two-hop questions whose first step is a name: "who is the mother of Micki Amador's husband?"

No single passage answers these: one says who Micki Amador's husband is, another who his mother
is. The question is split at its first possessive ("Micki Amador's husband"): the first hop asks
"who is Micki Amador's husband?"; when its answer is a name (Samual Amador), the second hop asks
the question with that name in place of the possessive ("who is the mother of Samual Amador?").
A question whose rest says nothing once the name is put in ("who is Tracey Kean's husband?" →
"who is Garth Kean?") is a one-hop question and is not split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bot.text import STOPWORDS, tokenize

_QUESTION_WORDS = {"what", "whats", "who", "whos", "when", "wen", "where", "which", "how", "hey", "hi"}
# A request put as a command ("name X's mother", "list Y's friends"): the verb is no part of the name.
_REQUEST_VERBS = {"name", "list", "tell", "show", "give", "find", "identify"}
# Words that qualify the noun after a possessive ("X's best friend", "X's favourite food"): the
# relation asked is the noun after them.
_MODIFIERS = r"(?:(?:favou?rite|best|late|eldest|oldest|youngest|older|younger|elder|current|former|first|home|e-?mail)\s+)?"
_APOSTROPHE_S = re.compile(r"['’]s\s+" + _MODIFIERS + r"(?P<noun>[A-Za-z][\w-]*)", re.I)
_WORD_BEFORE = re.compile(r"([A-Za-z][\w-]*)\s*$")


@dataclass(frozen=True)
class Hops:
    first: str  # the question the first hop answers: "who is Micki Amador's husband?"
    template: str  # the question with "{}" where the first hop's answer goes
    phrase: str  # the possessive phrase that the name replaces


def _owner_start(question: str, end: int) -> int | None:
    """Where the name before "'s" at `end` begins: up to three words, none a stop word."""
    start = None
    for _ in range(3):
        m = _WORD_BEFORE.search(question, 0, end)
        if m is None or m.group(1).lower() in STOPWORDS | _QUESTION_WORDS | _REQUEST_VERBS:
            break
        start, end = m.start(1), m.start(1)
    return start


def split_two_hop(question: str) -> Hops | None:
    """The two hops of `question`, or None when it has no possessive or nothing is left to ask."""
    for m in _APOSTROPHE_S.finditer(question):
        start = _owner_start(question, m.start())
        if start is None:
            continue
        phrase = question[start:m.end()]
        template = question[:start] + "{}" + question[m.end():]
        if not tokenize(template.replace("{}", " ")):
            return None  # "who is Tracey Kean's husband?": the first hop is the whole question
        return Hops(first=f"who is {phrase}?", template=template, phrase=phrase)
    return None


_IDENTITY = {"name", "names", "identity"}  # what someone is called: no relation of its own


def possessive(question: str) -> tuple[str, str] | None:
    """The owner and noun of the question's last possessive ("who is Micki Amador's husband" →
    ("Micki Amador", "husband")), the noun lower-cased; None without one, or when the noun is a
    stop word ("Tracey's the one"). "X's wife's name" asks for the wife: her name is no relation."""
    found = [(question[start:m.start()], m.group("noun").lower()) for m in _APOSTROPHE_S.finditer(question)
             if (start := _owner_start(question, m.start())) is not None]  # not "what's", "it's"
    while found and found[-1][1] in _IDENTITY:
        found.pop()
    if not found or found[-1][1] in STOPWORDS:
        return None
    return found[-1]


# "who is Tracey Kean married to", "who is Garth Kean friends with": the relation is the word after
# the name, as "husband" is in "Tracey Kean's husband".
_RELATED_TO = re.compile(r"^\W*who(?:['’]s|\s+(?:is|was|are|were))\s+(?P<owner>(?:[A-Za-z][\w-]*\s+){1,3}?)"
                         r"(?P<noun>[a-z]+ed|friends?)\s+(?:to|with)\b", re.I)


def relation_asked(question: str) -> tuple[str, str] | None:
    """The owner and relation a question asks about: its possessive ("who is Micki Amador's
    husband" → ("Micki Amador", "husband")), or the participle after the name in "who is X
    married to" → ("X", "married"); None without either."""
    found = possessive(question)
    if found is not None:
        return found
    m = _RELATED_TO.match(question)
    if m is None:
        return None
    owner = m.group("owner").strip()
    if any(w.lower() in STOPWORDS for w in owner.split()):
        return None  # "who is the one married to …": no name before the word
    return owner, m.group("noun").lower()
