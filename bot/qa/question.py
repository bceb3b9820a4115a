"""What a question asks for: its cleaned text, its type (when → a date, how many/much → a number,
who → a name) and the spans of a sentence that hold that kind of thing.
"""
from __future__ import annotations

import re

from bot.errors import QuestionError
from bot.text import STOPWORDS

MAX_QUESTION_CHARS = 4000


def clean_question(question: str) -> str:
    """Strip control characters and surrounding space; reject empty and oversize questions."""
    if question is None:
        raise QuestionError("Please ask a question.")
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in question)
    text = " ".join(text.split())
    if not text:
        raise QuestionError("Please ask a question (it was empty).")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"That question is {len(text):,} characters long; the limit is {MAX_QUESTION_CHARS:,}. "
            "Ask about one thing at a time."
        )
    return text


_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
          r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\b\.?")


_NUMWORD = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|hundred|dozen)"


SPAN_PATTERNS = {
    "when": re.compile(
        rf"\b(?:(?:after|before|by|since|until|till|in|on|from|around|early|late|mid)\s+)?"
        rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}(?:\s+\d{{4}})?"
        rf"|{_MONTH}(?:\s+\d{{4}})?|(?:1[5-9]|20)\d\d(?:s)?\b|the\s+\d{{1,2}}(?:st|nd|rd|th)\b"
        rf"|(?:\d+|{_NUMWORD}|a)\s+(?:years?|months?|weeks?|days?|hours?)(?:\s+(?:in advance|ago|later|earlier))?"
        rf"|(?:this|next|last)\s+(?:year|month|week)|yesterday|today|tomorrow)",
        re.I,
    ),
    "how_many": re.compile(
        rf"\b(?:(?:more than|over|about|around|nearly|almost|some|a total of|up to|at least|only)\s+)?"
        rf"(?:[$€£]\s?)?(?:\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?|{_NUMWORD})(?:\s*(?:%|percent|thousand|million|billion|trillion))?"
        rf"(?:\s+(?:US\s+)?[a-z]+)?",
        re.I,
    ),
    "who": re.compile(r"\b(?:[A-Z][a-z]+\.?\s+){0,3}[A-Z][a-zA-Z]+\b"),
}


_TYPE_RULES = [
    ("when", re.compile(r"\b(when|what (year|date|time|month|day)|which (year|date|month|day)|how long|how soon|deadline|since when)\b", re.I)),
    ("how_many", re.compile(r"\b(how (many|much|big|large|old|far)|number of|what (percentage|amount|number)|cost|price)\b", re.I)),
    ("who", re.compile(r"\b(who|whom|whose|which (person|company|agency|organi[sz]ation|country|countries))\b", re.I)),
]


_NOT_NAMES = {"the", "a", "an", "on", "in", "at", "after", "before", "however", "by", "but", "and",
              "this", "that", "it", "he", "she", "they", "we", "i", "there", "then", "when", "if"}


def question_type(question: str) -> str | None:
    for kind, rule in _TYPE_RULES:
        if rule.search(question):
            return kind
    return None


def span_candidates(kind: str | None, sentence: str, question: str) -> list[tuple[int, int]]:
    """Spans of `sentence` holding the kind of thing the question asks for (a date, a number, a
    name), leaving out the question's own subject."""
    if kind is None:
        return []
    spans = []
    for m in SPAN_PATTERNS[kind].finditer(sentence):
        text = m.group(0).rstrip(" ,;")
        if kind == "who":
            words = [w for w in text.split() if w.lower().strip(".") not in _NOT_NAMES]
            if not words or words[-1].lower().strip(".") in question.lower():
                continue  # the question's own subject (by surname: "Deputy Prime Minister Borisov")
            if m.start() == 0 or sentence[m.start() - 2:m.start()].strip() in (".", ""):
                if len(words) == 1 and words[0].lower() in _NOT_NAMES:
                    continue
        if kind == "how_many":
            if len(text.split()) > 1 and text.split()[-1].lower() in STOPWORDS:
                text = text[: text.rfind(" ")].rstrip(" ,;")
            if not re.search(r"\d|" + _NUMWORD, text, re.I) or re.fullmatch(r"(?:1[5-9]|20)\d\d", text):
                continue  # no number, or a bare year: not an amount
        spans.append((m.start(), m.start() + len(text)))
    return spans


_CLAUSE_BREAK = re.compile(r"[,;:()—–]|\s(?:that|and|but|which|who|while|whereas|because)\s")


def clause_around(sentence: str, span: tuple[int, int], min_words: int = 6) -> str:
    """The clause a span sits in: from the previous break to the next one, widened forward
    while it is too short to mean anything on its own ("On July 15," → "On July 15, according
    to an order signed by …")."""
    before = [m.end() for m in _CLAUSE_BREAK.finditer(sentence, 0, span[0])]
    start = before[-1] if before else 0
    end = span[1]
    while True:
        after = _CLAUSE_BREAK.search(sentence, end)
        end = after.start() if after else len(sentence)
        if not after or len(sentence[start:end].split()) >= min_words:
            return sentence[start:end].strip()
        end = after.end()
