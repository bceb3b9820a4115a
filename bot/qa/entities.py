"""The names a question is about, and whether the retrieved passages mention them at all.

A question about "Tashina Dowdy" or `os.path.joinall()` that no retrieved passage mentions is not
answered from a passage about someone or something else: the answer says which name no document
mentions. Two kinds of names are looked for:

* code identifiers: dotted names (`os.path.join`), calls (`joinall()`), snake_case and CamelCase;
* names of people, places and things: runs of two or more words that the documents themselves
  write capitalised (a lexicon of the corpus's proper nouns, since people type names in lower
  case), or that the question capitalises. A word the corpus never uses completes such a name
  after a word the corpus uses first in names ("abdul kowalski") or before one it uses last
  ("tobias barbee"), unless it is one typo away from a word the corpus uses.

A name counts as mentioned when a passage holds its words in order, each word allowed one typo
(edit distance 1 for words of five letters or more), so a misspelt real name is still found.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from bot.qa.vocabulary import edits1
from bot.text import STOPWORDS, WORD

_IDENTIFIER = re.compile(
    r"(?<![\w.])(?:[A-Za-z_]\w+(?:\.[A-Za-z_]\w*)+(?:\(\))?"  # dotted: os.path.join, str.reverse() (not i.e.)
    r"|[A-Za-z_]\w*\(\)"  # a call: joinall()
    r"|[a-z]+_\w+"  # snake_case
    r"|[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*)"  # camelCase, CamelCase
)
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,})\b", re.M)
_NAME_PAIR = re.compile(r"\b([A-Z][a-z]+)\s+([A-Z][a-z]+)\b")
PROPER_SHARE = 0.8  # a word is a proper noun when at least this share of its uses are capitalised


class ProperNouns:
    """Which words a corpus writes capitalised (mid-sentence), and which words it uses at all."""

    def __init__(self, proper: Iterable[str] = (), vocabulary: Iterable[str] = (), first: Iterable[str] = (),
                 last: Iterable[str] = ()) -> None:
        self.proper = frozenset(proper)
        self.vocabulary = frozenset(vocabulary)
        self.first = frozenset(first) & self.proper  # written first in two-word names ("Abdul" Felker)
        self.last = frozenset(last) & self.proper  # written last ("Felker")

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "ProperNouns":
        capitalised: Counter[str] = Counter()
        uses: Counter[str] = Counter()
        first: set[str] = set()
        last: set[str] = set()
        for text in texts:
            uses.update(w.lower() for w in WORD.findall(text))
            capitalised.update(w.lower() for w in _CAPITALISED.findall(text))
            for a, b in _NAME_PAIR.findall(text):
                first.add(a.lower())
                last.add(b.lower())
        proper = {w for w, n in capitalised.items() if w not in STOPWORDS and n >= PROPER_SHARE * uses[w]}
        return cls(proper, uses, first, last)

    def to_json(self) -> dict:
        return {key: sorted(getattr(self, key)) for key in ("proper", "vocabulary", "first", "last")}

    @classmethod
    def from_json(cls, data: dict) -> "ProperNouns":
        return cls(data["proper"], data["vocabulary"], data["first"], data["last"])


def question_names(question: str, nouns: ProperNouns, common=lambda word: False) -> list[str]:
    """The identifiers and multi-word names in `question`, as written. `common(word)` says that a
    word is everyday English ("early"): such a word does not complete a name when typed in lower case."""
    found = [m.group(0) for m in _IDENTIFIER.finditer(question)]
    taken = " ".join(found).lower()
    tokens = list(re.finditer(r"[A-Za-z][A-Za-z'’-]*", question))
    run: list[re.Match] = []

    def close() -> None:
        words = [re.sub(r"['’]s$", "", m.group(0)) for m in run]
        known = [w for w in words if w.lower() in nouns.proper]
        capitalised = all(w[0].isupper() for w in words) and run and run[0].start() > 0
        if len(words) >= 2 and (known or capitalised) and words[0].lower() not in taken:
            found.append(" ".join(words))
        run.clear()

    bases = [re.sub(r"['’]s$", "", m.group(0)).lower() for m in tokens]
    for i, m in enumerate(tokens):
        word, base = m.group(0), bases[i]
        completes = (len(run) == 1 and bases[i - 1] in nouns.first) or \
            (not run and i + 1 < len(bases) and bases[i + 1] in nouns.last)
        unknown = base not in nouns.vocabulary and len(base) > 2 and not _typo_of_known(base, nouns.vocabulary) \
            and not (word.islower() and common(base))
        name_like = base in nouns.proper or (word[0].isupper() and i > 0) or (completes and unknown)
        if name_like and base not in STOPWORDS:
            run.append(m)
            if word.lower().endswith(("'s", "’s")):
                close()
        else:
            close()
    close()
    return found


def _typo_of_known(word: str, vocabulary: frozenset[str]) -> bool:
    """Whether one edit (delete, transpose, replace, insert) turns `word` into a known word."""
    return not vocabulary.isdisjoint(edits1(word))


def _near(a: str, b: str) -> bool:
    """Equal, or one edit apart for words of five letters or more."""
    if a == b:
        return True
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    if len(a) > len(b):
        a, b = b, a
    return any(b[:i] + b[i + 1:] == a for i in range(len(b)))


def mentioned(name: str, texts: Iterable[str]) -> bool:
    """Whether some text holds `name`: its words in order, next to each other, each within one edit;
    for an identifier, its last part (`join` of `os.path.join()`), in a text that also holds its
    first part (`os`) when it has one."""
    if _IDENTIFIER.fullmatch(name):
        parts = [p.lower() for p in name.rstrip("()").split(".")]
        for text in texts:
            present = {w.lower() for w in WORD.findall(text)}
            if parts[-1] in present and (len(parts) == 1 or parts[0] in present):
                return True
        return False
    wanted = [w.lower() for w in WORD.findall(name)]
    for text in texts:
        words = [w.lower() for w in WORD.findall(text)]
        for i in range(len(words) - len(wanted) + 1):
            if all(_near(words[i + j], w) for j, w in enumerate(wanted)):
                return True
    return False


def unmentioned(question: str, nouns: ProperNouns, texts: list[str], common=lambda word: False) -> str | None:
    """The first name of the question that none of `texts` mentions, if any. A one-word identifier
    (`TypeError`, `max_depth`) is looked up in the whole corpus's words instead."""
    for name in question_names(question, nouns, common):
        if _IDENTIFIER.fullmatch(name) and "." not in name:
            if name.rstrip("()").lower() not in nouns.vocabulary:
                return name
        elif not mentioned(name, texts):
            return name
    return None
