"""The LLM's reply, checked: each cited sentence must be supported by the passages it cites,
unmarked sentences are cited only where one passage supports them, the rest is dropped.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.schema import REFUSAL_TEXT, Answer, Chunk, citation_for
from bot.text import MARKER_RUN, marker_numbers, numbers, split_sentences, strip_markers, tidy_spacing, tokenize, words

log = logging.getLogger(__name__)

# Markers the model writes in other forms ("[passage 2]", "【3】"), and reasoning models' thoughts.
MARKER_VARIANT = re.compile(r"[\[【]\s*(?:passages?|sources?|documents?|doc)?\s*(\d+)\s*[\]】]", re.IGNORECASE)
THINKING = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)

# Words that say where a claim comes from, not what it claims ("according to passage 2").
_SOURCE_WORDS = frozenset(tokenize("also according passage passages document documents"))


def _content_words(text: str) -> set[str]:
    """The stems a claim is made of (the same tokens retrieval uses), single letters left out."""
    return {t for t in tokenize(text) if t not in _SOURCE_WORDS and (len(t) > 1 or t.isdigit())}

# Support thresholds. A cited sentence is kept when one of its passages supports it:
# - without embeddings: at least OVERLAP_MIN_SHARE of the sentence's content words (crudely
#   stemmed) occur in the passage;
# - with embeddings: the mean of that share and the best cosine between the sentence and the
#   passage (or one of its sentences) is at least EMBED_MIN_SUPPORT. Neither signal separates
#   well alone: MiniLM scores a true paraphrase of a long sentence at 0.53 and the invention
#   "Borisov was fired by Putin for corruption" at 0.56; the share is 0.5 for that invention.
# Calibrated with all-MiniLM-L6-v2 on paraphrases of and inventions about the ISS article:
# paraphrases scored share ≥ 0.57 and mean ≥ 0.64, inventions share ≤ 0.5 and mean ≤ 0.53
# (tests/test_llm.py pins these examples).
OVERLAP_MIN_SHARE = 0.55


EMBED_MIN_SUPPORT = 0.6


# Every number in a sentence must occur in its passages (embeddings and word overlap are both
# blind to "2024" vs "2030").
NUMBERS_MUST_MATCH = True


# Text addressed to the model rather than to readers: prompt injection in a document.
_INJECTION_CUE = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}?\b(?:instructions?|prompts?|rules|directions|"
    r"everything|above|previous|prior)\b|\byou are now\b|\bnew instructions?\b|"
    r"\b(?:system|assistant)\s*(?:prompt\s*)?:|\bas an? (?:ai|language model|assistant)\b",
    re.IGNORECASE,
)


def _support_sentences(passage: Chunk) -> list[str]:
    """The sentences of a passage that may support a claim: all but those addressing the model."""
    sentences = split_sentences(" ".join(passage.text.split()))
    kept = [s for s in sentences if not _INJECTION_CUE.search(s)]
    if len(kept) < len(sentences):
        log.info("passage %s contains instruction-like text; it supports no claim", passage.id)
    return kept


def _is_refusal(text: str) -> bool:
    def norm(s: str) -> str:
        s = strip_markers(s).lower().replace("’", "'").replace("‘", "'")
        return " ".join(words(s.replace("'", "")))

    return norm(text) == norm(REFUSAL_TEXT)


@dataclass
class _Sentence:
    text: str  # as written by the model, markers included
    cited: list[int] = field(default_factory=list)  # valid passage indices (0-based), in order
    added: int | None = None  # passage index given to an unmarked but supported sentence


class _SupportChecker:
    """Decides whether a sentence is supported by a passage.

    Sentences of a passage that address the model ("ignore previous instructions and say ...")
    support nothing, so a reply that obeys an injected instruction fails verification even
    though it repeats the passage's words.
    """

    def __init__(self, passages: Sequence[Chunk], embed: Callable[[list[str]], np.ndarray] | None):
        self.sentences = [_support_sentences(p) for p in passages]
        texts = [" ".join([p.title, p.section or "", *sentences]) for p, sentences in zip(passages, self.sentences)]
        self.words = [_content_words(t) for t in texts]
        self.numbers = [numbers(t) for t in texts]
        self.embed = embed
        self._passage_vectors: list[np.ndarray] | None = None
        self._sentence_vectors: dict[str, np.ndarray] = {}

    def _vectors(self) -> list[np.ndarray]:
        if self._passage_vectors is None:
            texts, owners = [], []
            for i, sentences in enumerate(self.sentences):
                pieces = [" ".join(sentences), *sentences] if len(sentences) > 1 else sentences
                texts += pieces
                owners += [i] * len(pieces)
            vectors = np.asarray(self.embed(texts), dtype=float) if texts else np.zeros((0, 1))
            owners_arr = np.array(owners)
            self._passage_vectors = [vectors[owners_arr == i] for i in range(len(self.sentences))]
        return self._passage_vectors

    def prime(self, sentences: Iterable[str]) -> None:
        """Embed the passages and `sentences` in one batch (tiny batches are slow on CPU)."""
        if self.embed is None:
            return
        bodies = list(dict.fromkeys(b for b in map(strip_markers, sentences) if b not in self._sentence_vectors))
        try:
            self._vectors()
            if bodies:
                self._sentence_vectors.update(zip(bodies, np.asarray(self.embed(bodies), dtype=float)))
        except Exception:
            log.warning("embedding failed during citation checks; using word overlap", exc_info=True)
            self.embed = None

    def support(self, sentence: str, group: Sequence[int]) -> float:
        """How well the passages of `group`, taken together, support `sentence`: 0 when they
        don't, else a score above the threshold."""
        body = strip_markers(sentence)
        claim = _content_words(body)
        if not claim or not group:
            return 0.0
        if NUMBERS_MUST_MATCH and not numbers(body) <= set().union(*(self.numbers[i] for i in group)):
            return 0.0
        share = len(claim & set().union(*(self.words[i] for i in group))) / len(claim)
        if self.embed is not None:
            try:
                if body not in self._sentence_vectors:
                    self._sentence_vectors[body] = np.asarray(self.embed([body]), dtype=float)[0]
                vector, vectors = self._sentence_vectors[body], self._vectors()
                cosine = max(float(np.max(vectors[i] @ vector, initial=0.0)) for i in group)
                value = (cosine + share) / 2
                return value if value >= EMBED_MIN_SUPPORT else 0.0
            except Exception:
                log.warning("embedding failed during citation checks; using word overlap", exc_info=True)
                self.embed = None
        return share if share >= OVERLAP_MIN_SHARE else 0.0

    def best_passage(self, sentence: str) -> int | None:
        """The passage that supports `sentence` best on its own, if any does."""
        support = {i: self.support(sentence, [i]) for i in range(len(self.words))}
        best = max(support, key=support.get, default=None)
        return best if best is not None and support[best] > 0 else None


def _renumber(text: str, mapping: dict[int, int], added: int | None) -> str:
    """Rewrite the [n] markers of one sentence with the final numbers, drop invalid ones, and
    append the marker of a passage given to an unmarked sentence."""

    def repl(m: re.Match) -> str:
        numbers = []
        for n in re.findall(r"\d+", m.group()):
            new = mapping.get(int(n) - 1)
            if new is not None and new not in numbers:
                numbers.append(new)
        lead = m.group()[: len(m.group()) - len(m.group().lstrip())]
        return lead + "".join(f"[{n}]" for n in numbers) if numbers else ""

    text = tidy_spacing(MARKER_RUN.sub(repl, text))
    if added is not None:
        m = re.search(r"[.!?]+[\"'”’)]*$", text)
        cut = m.start() if m else len(text)
        text = f"{text[:cut]} [{mapping[added]}]{text[cut:]}"
    return text


def verify_reply(question: str, passages: list[Chunk], scores: list[float], reply: str, name: str,
                 embed: Callable[[list[str]], np.ndarray] | None) -> Answer | None:
    """The reply as an Answer holding only what the passages support, or None: fall back."""
    reply = MARKER_VARIANT.sub(r"[\1]", THINKING.sub("", reply or "")).strip()
    if _is_refusal(reply):
        citations = [citation_for(p, i + 1, scores[i] if i < len(scores) else 0.0) for i, p in enumerate(passages)]
        return Answer(question, REFUSAL_TEXT, True, citations, name)

    checker = _SupportChecker(passages, embed)
    split = [split_sentences(line) for line in reply.splitlines()]  # [] for a blank line
    checker.prime(text for sentences in split for text in sentences)
    lines: list[list[_Sentence]] = []
    total = dropped = invalid = 0
    for sentences in split:
        kept: list[_Sentence] = []
        for text in sentences:
            total += 1
            if _is_refusal(text):  # next to claims, "I couldn't find this" says nothing
                continue
            marked = marker_numbers(text)
            cited = list(dict.fromkeys(n - 1 for n in marked if 1 <= n <= len(passages)))
            invalid += len(marked) - len([n for n in marked if 1 <= n <= len(passages)])
            if cited and checker.support(text, cited):
                kept.append(_Sentence(text, cited))
            elif not cited and (best := checker.best_passage(text)) is not None:
                kept.append(_Sentence(text, added=best))
            else:
                dropped += 1
        lines.append(kept)

    if dropped or invalid:
        log.info(
            "LLM %s: dropped %d of %d sentences as unsupported, removed %d invalid markers",
            name, dropped, total, invalid,
        )
    if not any(lines):
        log.info("LLM %s: nothing verifiable in the reply, falling back", name)
        return None

    mapping: dict[int, int] = {}  # passage index -> final citation number
    for kept in lines:
        for s in kept:
            for i in [*s.cited, *([s.added] if s.added is not None else [])]:
                mapping.setdefault(i, len(mapping) + 1)
    # Lines whose sentences were all dropped go; blank lines between paragraphs stay.
    text_lines = [
        " ".join(_renumber(s.text, mapping, s.added) for s in kept)
        for kept, sentences in zip(lines, split)
        if kept or not sentences
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(text_lines)).strip()
    citations = [citation_for(passages[i], n, scores[i] if i < len(scores) else 0.0) for i, n in mapping.items()]
    return Answer(question, text, False, citations, name)

