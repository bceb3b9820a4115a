"""What a question asks for: its cleaned text, its type (when → a date, how many/much → a number,
who → a name) and the spans of a sentence that hold that kind of thing.
"""
from __future__ import annotations

import re

from bot.errors import QuestionError
from bot.text import STOPWORDS, stem_words, words

MAX_QUESTION_CHARS = 4000


# What chat adds around a question and says nothing about what is asked: mentions (@everyone,
# Discord's <@123>), and greetings or fillers in front ("hey", "quick q:", "pls").
_MENTION = re.compile(r"<[@#][!&]?\d+>|(?<!\w)@(?:everyone|here)\b")  # not "@lru_cache"
_FILLER = re.compile(r"^(?:(?:hey|hi|hello|yo|ok|okay|so|um+|uh+|pls|please|guys|all|folks|team|quick"
                     r"(?: q(?:uestion)?)?|question|q)\b[\s,:;!.-]*)+"
                     r"(?=(?:what|which|who|whom|whose|when|where|why|how|is|are|does|do|did|can|could|should"
                     r"|will|would|was|were|has|have)\b)", re.I)


def strip_chatter(question: str) -> str:
    """The question without mentions and leading chat fillers; the question itself if nothing
    would be left."""
    text = " ".join(_MENTION.sub(" ", question).split())
    text = _FILLER.sub("", text).strip()
    return text or question


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
_COUNT_WORD = rf"(?:{_NUMWORD}|once|twice|thrice)"  # "how many times" is answered by "once"


SPAN_PATTERNS = {
    "when": re.compile(
        rf"\b(?:(?:after|before|by|since|until|till|in|on|from|around|early|late|mid)\s+)?"
        rf"(?:\d{{4}}-\d\d-\d\d\b|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}(?:\s+\d{{4}})?"
        rf"|{_MONTH}(?:\s+\d{{4}})?|(?:1[5-9]|20)\d\d(?:s)?\b|the\s+\d{{1,2}}(?:st|nd|rd|th)\b"
        rf"|(?:\d+|{_NUMWORD}|a)\s+(?:years?|months?|weeks?|days?|hours?)(?:\s+(?:in advance|ago|later|earlier))?"
        rf"|(?:this|next|last)\s+(?:year|month|week)|yesterday|today|tomorrow)",
        re.I,
    ),
    "how_many": re.compile(
        rf"\b(?:(?:more than|over|about|around|nearly|almost|some|a total of|up to|at least|only)\s+)?"
        rf"(?:[$€£]\s?)?(?:\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?|{_COUNT_WORD})(?:\s*(?:%|percent|thousand|million|billion|trillion))?"
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
# A capitalised date word is not a person ("who did Borisov replace?" is never "July").
_CALENDAR = {"january", "february", "march", "april", "may", "june", "july", "august", "september",
             "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
             "sept", "oct", "nov", "dec", "monday", "tuesday", "wednesday", "thursday", "friday",
             "saturday", "sunday"}
# Words that only qualify a name: a span whose words are the question's own plus these is the
# question's subject ("Deputy Prime Minister Borisov" when asked about Borisov), not an answer.
_TITLES = {"mr", "mrs", "ms", "dr", "prof", "professor", "sir", "dame", "lord", "lady", "president", "vice",
           "deputy", "prime", "minister", "director", "head", "chief", "general", "secretary", "chairman",
           "chair", "governor", "mayor", "senator", "ambassador", "commander", "captain", "colonel", "judge",
           "justice", "king", "queen", "prince", "princess", "former", "new", "acting"}


# The words a question starts with; its first one decides its type ("which setting … when their
# mail is stuck" asks for a setting, not a time).
_QUESTION_WORD = re.compile(r"\b(?:what|which|who|whom|whose|when|where|why|how|is|are|does|do|did|can|could|should"
                            r"|will|was|were|has|have)\b", re.I)


def question_type(question: str) -> str | None:
    head = _QUESTION_WORD.search(question)
    found = [(m.start(), kind) for kind, rule in _TYPE_RULES if (m := rule.search(question))]
    if not found:
        return None
    start, kind = min(found)
    if head is not None and head.start() < start and not _typed_at(question, head.start()):
        return None  # an earlier question word asks for something else
    return kind


def _typed_at(question: str, position: int) -> bool:
    """Whether a typed question phrase (when, how many, who, ...) starts at `position`."""
    return any(rule.match(question, position) for _, rule in _TYPE_RULES)


_YEAR = re.compile(r"\b\d{4}\b")
_ASKS_YEAR = re.compile(r"\b(?:what|which) year\b|\byear\?", re.I)
_BARE_MONTH = re.compile(rf"(?:{_MONTH})", re.I)
_DATE_PREPOSITION = re.compile(r"\b(?:in|on|since|until|till|by|from|during|early|late|mid|of|before|after)\s+$", re.I)
# What "how many" counts: the words after it up to the verb ("how many random bytes are …" counts
# bytes, "how many times" times); a number's unit must be one of them.
_HOW_MANY_NOUN = re.compile(r"\bhow many((?:\s+[a-z]+){1,3})", re.I)


def _counted_words(question: str) -> list[str]:
    found = _HOW_MANY_NOUN.search(question)
    if not found:
        return []
    counted = []
    for word in found.group(1).lower().split():
        if word in STOPWORDS:
            break
        counted.append(word)
    return counted


# Units of one dimension answer each other: "how many months' warning" is answered by "one year in
# advance", "how many bytes" by "10 MB".
_DIMENSIONS = [frozenset("second seconds minute minutes hour hours day days week weeks month months year years "
                         "decade decades century centuries".split()),
               frozenset("bit bits byte bytes kb kib mb mib gb gib tb tib kilobyte kilobytes megabyte megabytes "
                         "gigabyte gigabytes".split()),
               frozenset("mm cm km metre metres meter meters kilometre kilometres kilometer kilometers mile miles "
                         "foot feet inch inches".split()),
               frozenset("gram grams kg kilogram kilograms ton tons tonne tonnes pound pounds".split())]


def _same_dimension(unit: str, counted: list[str]) -> bool:
    unit = unit.lower()
    return any(unit in d and any(w in d for w in counted) for d in _DIMENSIONS)


_HOW_MUCH = re.compile(r"\bhow much\b", re.I)
# What "how much" is answered in: money, sizes, time and other measures; "16 countries" counts things.
_MEASURES = re.compile(r"(?:dollars?|euros?|pounds?|yuan|roubles?|rubles?|yen|francs?|cents?|percent|%|bytes?|"
                       r"[kmgt]i?b|seconds?|minutes?|hours?|days?|weeks?|months?|years?|metres?|meters?|"
                       r"kilo\w+|grams?|tons?|tonnes?|litres?|liters?|miles?|thousand|million|billion|trillion)", re.I)


# A day of a date ("the 26th", "July 26", "26 July", "2022-07-26"): a date, never an amount.
_DAY_OF_DATE = re.compile(rf"\d{{4}}-\d\d-\d\d|{_MONTH}\s+\d{{1,2}}\b|\b\d{{1,2}}\s+{_MONTH}|\b\d{{1,2}}(?:st|nd|rd|th)\b", re.I)
# Three or more numbers in a row ("1, 2, 5, 10, 20"): an enumeration, none of them the amount asked.
_NUMBER_LIST = re.compile(r"\d+(?:\.\d+)?(?:\s*,\s*\d+(?:\.\d+)?){2,}")


def span_candidates(kind: str | None, sentence: str, question: str) -> list[tuple[int, int]]:
    """Spans of `sentence` holding the kind of thing the question asks for (a date, a number, a
    name), leaving out the question's own subject."""
    if kind is None:
        return []
    spans = []
    asked = set(words(question))
    for m in SPAN_PATTERNS[kind].finditer(sentence):
        text, start = m.group(0).rstrip(" ,;"), m.start()
        if kind == "who":
            names = text.split()
            while names and names[0].lower().strip(".") in _NOT_NAMES:  # "On July", "The Kremlin"
                start = sentence.index(names[1], start + len(names[0])) if len(names) > 1 else start
                names = names[1:]
            if not names or any(w.lower().strip(".") in _CALENDAR for w in names):
                continue
            own = [w for w in names if w.lower().strip(".") not in asked]
            if all(w.lower().strip(".") in _TITLES for w in own):
                continue  # the question's own subject
            initials = "".join(re.findall(r"[A-Z]", "".join(names))).lower()
            if len(initials) >= 2 and initials in asked:
                continue  # "Constant DataBase" when asked about "cdb": the subject, spelt out
            text = " ".join(names)
        if kind == "when":
            if _ASKS_YEAR.search(question) and not _YEAR.search(text):
                continue  # "what year?" is not answered by "on the 26th"
            if _BARE_MONTH.fullmatch(text) and not _DATE_PREPOSITION.search(sentence[:start]):
                continue  # "May" alone, with no "in" before it, is more often the verb
        if kind == "how_many":
            if len(text.split()) > 1 and text.split()[-1].lower() in STOPWORDS:
                text = text[: text.rfind(" ")].rstrip(" ,;")
            if not re.search(r"\d|" + _COUNT_WORD, text, re.I) or re.fullmatch(r"(?:1[5-9]|20)\d\d", text):
                continue  # no number, or a bare year: not an amount
            if any(e.start() <= m.start() < e.end() for e in _NUMBER_LIST.finditer(sentence)):
                continue  # one item of an enumeration
            if re.match(r"\d+-[A-Za-z]", sentence[m.start():]):
                continue  # "2-tuples", "32-bit": a number that qualifies a word counts nothing
            digits = [i for i in range(m.start(), m.start() + len(text)) if sentence[i].isdigit()]
            if any(d.start() <= i < d.end() for d in _DAY_OF_DATE.finditer(sentence) for i in digits):
                continue  # a digit of a date ("on the 26th", "July 26") counts nothing
            counted = _counted_words(question)
            if text.lower() in ("once", "twice", "thrice") and counted[:1] != ["times"]:
                continue  # "once" counts only times ("once the loop ends" is no amount)
            unit = re.search(r"([a-z]+)$", text, re.I)
            if counted and unit and not re.fullmatch(r"\d.*|" + _COUNT_WORD, unit.group(1), re.I) and \
                    stem_words([unit.group(1).lower()])[0] not in stem_words(counted) and \
                    not _same_dimension(unit.group(1), counted):
                continue  # "how many times" is not answered by "0.2 second"
            if _HOW_MUCH.search(question) and unit and not re.fullmatch(r"\d.*|" + _NUMWORD, unit.group(1), re.I) \
                    and not _MEASURES.fullmatch(unit.group(1)):
                continue  # "how much was invested" is not answered by "16 countries"
        spans.append((start, start + len(text)))
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


_STRONG_BREAK = re.compile(r";|\s(?:and|but|while|whereas)\s")
_COMMA = re.compile(",")


def span_contexts(sentence: str, spans: list[tuple[int, int]]) -> list[str]:
    """For each of several date/number spans of a sentence, the part of the sentence it belongs
    to: the sentence is cut between neighbouring spans at the last "and"/"but"/";" between them
    (else the last comma, else the last "that"/"which", else half-way), so "On July 15, …, Borisov succeeded Rogozin …, and on
    July 25 also served as …" gives each date its own event."""
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    cuts = [0]
    for a, b in zip(order, order[1:]):
        gap_start, gap_end = spans[a][1], spans[b][0]
        breaks = [[m.start() for m in pattern.finditer(sentence, gap_start, gap_end)]
                  for pattern in (_STRONG_BREAK, _COMMA, _CLAUSE_BREAK)]
        cut = next((found[-1] for found in breaks if found), (gap_start + gap_end) // 2)
        cuts.append(max(cut, cuts[-1]))
    cuts.append(len(sentence))
    contexts = [""] * len(spans)
    for rank, i in enumerate(order):
        contexts[i] = sentence[cuts[rank]:cuts[rank + 1]].strip(" ,;")
    return contexts
