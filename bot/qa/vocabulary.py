"""Typos in questions, corrected against the words of the corpus being asked.

People type "runnig", "daugher", "teh" and "wen". A word the corpus never uses cannot be found by
BM25, counts against the answer as the rarest of terms, and hides the question's type ("wen" is
no "when"). So before anything else reads the question, a word that neither the corpus nor
English knows, and that is one slip from a word the corpus uses, becomes that word. Measured on
the dev splits (tests/devsets): Postfix answers 0.43 -> 0.50, Python docs 0.36 -> 0.39, ISS and
phantom-dev the same; test splits ISS 0.56 -> 0.60, phantom 0.66 -> 0.72, Postfix 0.48 -> 0.52,
Python-docs recall@5 0.49 -> 0.58.

English is pyspellchecker's word-frequency list (MIT; counts from subtitles and Wikipedia), read
once per process, on the first question that needs it. It keeps real words from being
"corrected" into corpus words, and tells everyday words from names (`EnglishWords.common`).
"""
from __future__ import annotations

import gzip
import json
import marshal
import os
import re
import string
import threading
from importlib import metadata, resources
from pathlib import Path

from bot.text import STOPWORDS, stem_words

# An English word seen fewer times than this in the frequency list (1.6e9 words) is treated as a
# possible typo when the corpus has a word one edit away ("wen" → "when": "wen" is seen 336 times).
KNOWN_ENGLISH_COUNT = 1000
MIN_TYPO_LENGTH = 3
# An everyday word ("early": 157k) does not complete a name the corpus lacks ("early April" is no
# name); names seen in questions about people who do not exist are rarer ("hunter" 12k, "flynn" 383).
COMMON_ENGLISH_COUNT = 20_000

_LETTERS = string.ascii_lowercase
_WORD = re.compile(r"[A-Za-z]+")


def edits1(word: str) -> dict[str, int]:
    """Every string one edit away (Norvig), each with how likely that slip is, most likely 0:
    a letter left out ("runnig" for "running") or two swapped ("teh"), then one mistyped, then
    one too many. With that order "wen" is read as "when", not the commoner "we"."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out: dict[str, int] = {}
    for rank, group in enumerate((
            [a + c + b for a, b in splits for c in _LETTERS]  # the typist left a letter out
            + [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1],  # ... or swapped two
            [a + c + b[1:] for a, b in splits if b for c in _LETTERS],  # hit a wrong key
            [a + b[1:] for a, b in splits if b])):  # typed one too many
        for candidate in group:
            out.setdefault(candidate, rank)
    out.pop(word, None)
    return out


class EnglishWords:
    """Word → count in English at large, for words seen at least KNOWN_ENGLISH_COUNT times (19k
    words; the rarer ones are never "known" here). Loaded on first use, shared by every index of a
    process. Parsing the packaged list takes 0.35-0.4 s, so the kept words are cached beside the
    model files (a 14 ms load): a cold `qabot ask` pays that once per machine."""

    def __init__(self, cache_dir: Path | None = None, counts: dict[str, int] | None = None) -> None:
        self._cache_dir = cache_dir
        self._counts = counts
        self._stems: frozenset[str] | None = None  # stems of the common words, made on first use
        self._lock = threading.Lock()

    def _load(self) -> dict[str, int]:
        with self._lock:
            if self._counts is None:
                self._counts = self._read_cache() or self._parse()
        return self._counts

    def _cache_file(self) -> Path | None:
        if self._cache_dir is None:
            return None
        version = metadata.version("pyspellchecker")
        return self._cache_dir / f"english-words-{version}-{KNOWN_ENGLISH_COUNT}.marshal"

    def _read_cache(self) -> dict[str, int] | None:
        path = self._cache_file()
        try:
            counts = marshal.loads(path.read_bytes()) if path else None
        except (OSError, ValueError, EOFError, TypeError):
            return None
        return counts if isinstance(counts, dict) else None

    def _parse(self) -> dict[str, int]:
        data = resources.files("spellchecker").joinpath("resources/en.json.gz").read_bytes()
        counts = {w: n for w, n in json.loads(gzip.decompress(data)).items() if n >= KNOWN_ENGLISH_COUNT}
        path = self._cache_file()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(marshal.dumps(counts))
                tmp.replace(path)  # readers see the whole file or none
            except OSError:
                pass  # a read-only cache only costs the parse next time
        return counts

    def count(self, word: str) -> int:
        return self._load().get(word, 0)

    def known(self, word: str) -> bool:
        return self.count(word) >= KNOWN_ENGLISH_COUNT

    def common(self, word: str) -> bool:
        return self.count(word) >= COMMON_ENGLISH_COUNT

    def common_stem(self, stem: str) -> bool:
        """Whether some common English word has this Snowball stem ("replac": "replace")."""
        if self._stems is None:
            counts = self._load()
            common = [w for w, n in counts.items() if n >= COMMON_ENGLISH_COUNT]
            self._stems = frozenset(stem_words(common))
        return stem in self._stems


class QueryVocabulary:
    """A corpus's words, for correcting the words of questions asked of it."""

    def __init__(self, corpus_words, has_term, english: EnglishWords) -> None:
        self.corpus_words = corpus_words  # lower-case words as the documents write them
        self.has_term = has_term  # stem → whether some passage has it (acronyms of names too)
        self.english = english

    def _typo_fix(self, word: str) -> str | None:
        """The corpus word one edit away that a typo most likely meant (the likeliest slip, then
        the most common in English), for a word that neither the corpus nor English knows."""
        if len(word) < MIN_TYPO_LENGTH or word in STOPWORDS or self._in_corpus(word) or self.english.known(word):
            return None
        edits = edits1(word)
        candidates = {c: rank for c, rank in edits.items() if c in self.corpus_words or c in STOPWORDS}
        if not candidates:
            # Else an everyday English word ("runnig" → "running"), which the answerer can weigh
            # as such; a typo left as it is weighs as the rarest word of all.
            candidates = {c: rank for c, rank in edits.items() if self.english.common(c)}
        if not candidates:
            return None
        return min(candidates, key=lambda c: (candidates[c], -self.english.count(c), c))

    def _in_corpus(self, word: str) -> bool:
        # the BM25 terms also hold the acronyms of the documents' names ("iss"), which they never write
        return word in self.corpus_words or self.has_term(stem_words([word])[0])

    def correct(self, question: str) -> str:
        """The question with typos of corpus words corrected, keeping the typed case pattern."""
        def fix(match: re.Match) -> str:
            typed = match.group(0)
            fixed = self._typo_fix(typed.lower())
            if fixed is None:
                return typed
            return fixed.capitalize() if typed[0].isupper() else fixed
        return _WORD.sub(fix, question)
