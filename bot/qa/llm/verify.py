"""The LLM's reply, checked claim by claim against the passages, trusting none of its markers.

A sentence of the reply is a claim. It is shown, with a citation, only when one window of a
passage (one sentence, or two neighbouring ones) states it:
- every name, number (date, amount, version) and quoted phrase of the claim occurs in the window
  (trivial variants allowed: case, possessive 's, plural and other inflections, "ISS" for
  "International Space Station", "15th" for "15");
- the claim's subject (its words before the verb) occurs there too: "NASA said …" needs NASA;
- most of its content words occur there (OVERLAP_MIN_SHARE), and with embeddings the window
  means the same (EMBED_MIN_SUPPORT);
- a name the question asks about occurs there as well (the claim answers the question asked,
  not a neighbouring one: "who heads NASA?" is not answered by a window about Roscosmos).
A marked sentence is checked against the passages it cites; one with no marker, or whose
markers point to no passage that states it, is cited only when exactly one passage states it
strongly (STRONG_SHARE), else dropped. When the first sentence (the answer itself) or every
sentence is dropped, the reply is not used and the reason says why. The window that states a
claim is the citation's highlighted span, as with extractive citations.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.schema import REFUSAL_TEXT, Answer, Chunk, citation_for
from bot.text import (MARKER_RUN, STOPWORDS, acronyms, marker_numbers, sentence_spans, split_sentences,
                      stem_words, strip_markers, tidy_spacing, tokenize, words)

log = logging.getLogger(__name__)

# Why the extractive answer is shown instead (Answer.fallback_reason). A refusal falls back too:
# the extractive answerer refuses on its own when it finds nothing, and answers when the few
# passages the model saw lacked what a lower-ranked one holds.
NO_ANSWER = "it found no answer in the passages"
NOTHING_SUPPORTED = "nothing in its reply is stated by the passages"
ANSWER_UNSUPPORTED = "its answer sentence is not stated by the passages"
DISAGREES = "its answer disagrees with the extractive answer"
NO_VALUE = "its answer does not give the date or number asked for"
REFERENCE_REFUSED = "the extractive answerer found no answer to check it against"

# Questions that ask for a date or a quantity, and what such an answer holds: a digit, a month,
# a number word. Qwen 0.5B answered "when will Russia leave the ISS?" with a copied (so
# verifiable) paragraph about sanctions that never says when.
_ASKS_VALUE = re.compile(r"^\W*(?:when|what year|what date|how (?:many|much|long|old|often|far|big|large))\b", re.I)
_VALUE = re.compile(r"\d|\b(?:january|february|march|april|may|june|july|august|september|october|november|"
                    r"december|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                    r"hundred|thousand|million|billion|dozen|once|twice|never|always|daily|weekly|yearly|"
                    r"annually|today|yesterday|tomorrow|year|years|month|months|week|weeks|day|days)\b", re.I)

# Markers the model writes in other forms ("[passage 2]", "【3】"), and reasoning models' thoughts.
MARKER_VARIANT = re.compile(r"[\[【]\s*(?:passages?|sources?|documents?|doc)?\s*(\d+)\s*[\]】]", re.IGNORECASE)
THINKING = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)

# Words that say where a claim comes from, not what it claims ("according to passage 2").
_SOURCE_WORDS = frozenset(tokenize("also according passage passages document documents"))

# Support thresholds, on a window of one or two sentences. Paraphrases of the ISS article scored
# share >= 0.57 and (with all-MiniLM-L6-v2) mean >= 0.64, hand-written inventions share <= 0.5
# and mean <= 0.53 (tests/test_llm.py pins these examples). The name, number and subject checks
# are what catch the inventions real small models write, which share the passage's words
# (0.64-0.91 with the earlier whole-passage check): "NASA said …" over a passage without NASA.
OVERLAP_MIN_SHARE = 0.55
EMBED_MIN_SUPPORT = 0.6
# An unmarked claim is cited only when exactly one passage states it this well.
STRONG_SHARE = 0.75

# Text addressed to the model rather than to readers: prompt injection in a document.
_INJECTION_CUE = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}?\b(?:instructions?|prompts?|rules|directions|"
    r"everything|above|previous|prior)\b|\byou are now\b|\bnew instructions?\b|"
    r"\b(?:system|assistant)\s*(?:prompt\s*)?:|\bas an? (?:ai|language model|assistant)\b",
    re.IGNORECASE,
)

_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,80})[\"“”]|`([^`]{1,80})`")
_NAME = re.compile(r"\b[A-Z][\w.-]*[\w]|\b\w*[A-Z]\w*[A-Z]\w*\b|\b\w+(?:\.\w+)+\b|\b\w*_\w*\b")
# A verb ends the subject ("Russia's new station | will cost …"); auxiliaries, reporting verbs,
# and past forms are enough for the sentences answers are made of.
_VERBS = frozenset("""
is are was were be been being am will would shall should can could may might must has have had
does do did says said say plans planned announced decided stated reported told wants wanted
includes contains returns uses makes takes gives provides means allows lets needs requires became
""".split())
_BACK_REFERENCES = frozenset("it its they them their he she his her this these that those there".split())
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")


# A model's own way of saying it found nothing: "I don't know why the West sanctioned Russia [1]"
# (Gemma 3 270M, shown as an answer: its words are all in the passage) or "the passages do not say".
_HEDGE = re.compile(r"\b(?:I|we)\s+(?:do not|don['’]t|cannot|can['’]t|could not|couldn['’]t|am not sure|have no)\b"
                    r"|\b(?:passages?|documents?|context|text)\s+(?:does|do)\s*(?:not|n['’]t)\b"
                    r"|\bnot (?:mentioned|stated|provided|given|specified) in the (?:passages?|documents?|context|text)\b",
                    re.I)
# A claim that denies must be denied by its passage: "Borisov did not replace Rogozin" shares every
# word with the sentence that says he did.
_NEGATION = re.compile(r"\b(?:not|no|never|none|nothing|nobody|neither|nor|cannot|without)\b|n['’]t\b", re.I)
# The passages do not speak as the model: "I", "we", "my" must be the passage's own.
_FIRST_PERSON = re.compile(r"\b(?:I|[Ww]e|me|[Mm]y|[Oo]ur)\b")


def _is_refusal(text: str) -> bool:
    def norm(s: str) -> str:
        s = strip_markers(s).lower().replace("’", "'").replace("‘", "'")
        return " ".join(words(s.replace("'", "")))

    return norm(text) == norm(REFUSAL_TEXT)


def _refuses(sentence: str) -> bool:
    """The sentence says the model found nothing, in the prompt's words or its own."""
    return _is_refusal(sentence) or _HEDGE.search(strip_markers(sentence)) is not None


def _numbers(text: str) -> set[str]:
    """Tokens holding a digit, "15th" as "15"."""
    found = set()
    for w in words(text):
        if any(c.isdigit() for c in w):
            m = _ORDINAL.match(w)
            found.add(m.group(1) if m else w)
    return found


def _stems(text: str) -> set[str]:
    """Content stems, possessive 's folded ("Borisov's" is "Borisov"), with the acronyms of
    capitalised phrases ("International Space Station" also gives "iss")."""
    text = re.sub(r"(\w)['’]s\b", r"\1", text)
    return {t for t in tokenize(text) if t not in _SOURCE_WORDS} | set(acronyms(text))


def _name_key(name: str) -> tuple[frozenset[str], str]:
    name = re.sub(r"['’]s$", "", name)
    return frozenset(stem_words([w for w in words(name) if w not in STOPWORDS])), name.lower()


@dataclass
class Claim:
    """What a sentence asserts, in the parts that must be found in the passage."""

    text: str  # without markers
    stems: set[str]
    names: list[tuple[frozenset[str], str]]
    numbers: set[str]
    quoted: list[str]
    subject: list[tuple[frozenset[str], str]]  # its words before the verb, each as a name is
    answers: bool = False  # the reply's first sentence: it must be about what the question asks
    negated: bool = False  # it denies something ("not", "never", "n't")
    first_person: bool = False  # it speaks as "I" or "we"

    @classmethod
    def of(cls, sentence: str, answers: bool = False) -> "Claim":
        body = strip_markers(sentence)
        quoted = [" ".join((a or b).lower().split()) for a, b in _QUOTED.findall(body)]
        first = re.match(r"\W*(\w+)", body)
        names = []
        for m in _NAME.finditer(body):
            text = m.group()
            sentence_start = first is not None and m.start() == first.start(1)
            if sentence_start and text.isalpha() and not text.isupper() and text[1:].islower():
                continue  # "The", "Borisov": a capital that only starts the sentence (the subject check covers it)
            key = _name_key(text)
            if key[0]:
                names.append(key)
        return cls(body, _stems(body), names, _numbers(body), quoted, _subject(body), answers,
                   _NEGATION.search(body) is not None, _FIRST_PERSON.search(body) is not None)


def _subject(body: str) -> list[tuple[frozenset[str], str]]:
    """The content words before the sentence's first verb (at most four), each as (stems, word);
    none when it starts by referring back ("It", "They", "This")."""
    tokens = words(re.sub(r"(\w)['’]s\b", r"\1", body))
    if not tokens or tokens[0] in _BACK_REFERENCES:
        return []
    before = []
    for w in tokens:
        if w in _VERBS or (len(w) > 4 and w.endswith("ed")):
            break
        before.append(w)
    else:
        before = before[:4]
    return [(frozenset(stem_words([w])), w) for w in before if w not in STOPWORDS and stem_words([w])[0] not in _SOURCE_WORDS]


_POSSESSIVE = re.compile(r"((?:[A-Z][\w-]*\s+){0,3}[A-Z][\w-]*)['’]s\s+([a-z][\w-]*)")


def _name_order(text: str, names: list[str]) -> list[int]:
    """Where each name first occurs in `text` with "X's N" read as "N of X" (-1: absent)."""
    text = " ".join(_POSSESSIVE.sub(r"\2 of \1", text).lower().split())
    found = [re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", text) for name in names]
    return [m.start() if m else -1 for m in found]


_CALENDAR_NAME = re.compile(r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?", re.I)


def _same_order(claim: Claim, window: _Window, said: set[str]) -> bool:
    """The claim's first two names (its subject and object, dates aside) stand in the window in
    that order; and where one sentence of the window names both, that sentence is the one that
    says what the claim says of them ("Mason Mckay is the mother of Brad Mckay" is not stated by
    "The brother of Mason Mckay is Brad Mckay. The mother of Mason Mckay is Selena Mckay")."""
    names = [raw.lower() for _, raw in claim.names if not _CALENDAR_NAME.fullmatch(raw.split()[0])][:2]
    claimed = _name_order(claim.text, names)
    found = _name_order(window.original, names)
    pairs = sorted((c, f) for c, f in zip(claimed, found) if c >= 0 and f >= 0)
    if not all(a[1] <= b[1] for a, b in zip(pairs, pairs[1:])):
        return False
    if len(names) < 2 or not said:
        return True
    for start, end in sentence_spans(window.original):
        sentence = window.original[start:end]
        if all(at >= 0 for at in _name_order(sentence, names)):
            return bool(said & set(tokenize(sentence)))
    return True


# A preposition that makes its noun a complement ("services for the Russian economy", "replaced
# by Borisov"), never the one doing what the claim's verb says.
_GOVERNING = frozenset("for to by from with".split())


def _keeps_subject(claim: Claim, window: _Window) -> bool:
    """The claim's subject does not stand in the window as the complement of a preposition after
    the claim's verb: "The Russian economy needs to provide navigation …" (Gemma 3 270M, shown) is
    not what "to provide the necessary space services for the Russian economy, namely navigation"
    says. The claim's verb is the first of its words after the subject that the window has."""
    if not claim.subject:
        return True
    tokens = words(re.sub(r"(\w)['’]s\b", r"\1", claim.text))
    head = claim.subject[-1][1]
    if head not in tokens:
        return True
    after = [w for w in tokens[tokens.index(head) + 1:] if w not in STOPWORDS]
    seen = words(window.original)
    stems = stem_words(seen)
    verb_at = next((stems.index(stem) for stem in stem_words(after) if stem in stems), None)
    if verb_at is None:
        return True
    heads = [i for i, w in enumerate(seen) if w == head]
    # Kept where the subject occurs once as a subject may: before the verb, or not after a
    # preposition ("for the Russian economy").
    return not heads or any(at <= verb_at or not _GOVERNING & set(seen[max(0, at - 3):at]) for at in heads)


def _starts_word(text: str, within: str) -> bool:
    """`text` occurs in `within` at the start of a word ("europe" in "european space")."""
    return re.search(r"(?<!\w)" + re.escape(text), within) is not None


@dataclass
class _Window:
    start: int  # offsets in the passage's text (the citation's highlighted span)
    end: int
    text: str  # whitespace folded, lower-cased
    stems: set[str]
    numbers: set[str]
    original: str = ""  # as written (its capitals tell possessive names)


@dataclass
class _Passage:
    windows: list[_Window]
    heading: set[str]  # stems of the title and section, which name what the passage is about
    vectors: np.ndarray | None = None


def _passage(chunk: Chunk) -> _Passage:
    spans = [(s, e) for s, e in sentence_spans(chunk.text) if not _INJECTION_CUE.search(chunk.text[s:e])]
    if len(spans) < len(sentence_spans(chunk.text)):
        log.info("passage %s contains instruction-like text; it supports no claim", chunk.id)
    windows = []
    for i, (s, e) in enumerate(spans):
        for j in (i, i + 1):
            if j < len(spans) and (j == i or spans[j][0] - e < 20):  # neighbours: no gap between them
                text = chunk.text[s:spans[j][1]]
                windows.append(_Window(s, spans[j][1], " ".join(text.lower().split()), _stems(text), _numbers(text), text))
    return _Passage(windows, _stems(f"{chunk.title} {chunk.section or ''}"))


@dataclass
class Support:
    passage: int
    share: float
    start: int
    end: int


class SupportChecker:
    """Decides, claim by claim, which window of which passage states it.

    Sentences of a passage that address the model ("ignore previous instructions and say ...")
    state nothing, so a reply that obeys an injected instruction fails verification even though
    it repeats the passage's words."""

    def __init__(self, question: str, passages: Sequence[Chunk], embed: Callable[[list[str]], np.ndarray] | None):
        self.passages = [_passage(p) for p in passages]
        self.embed = embed
        self.asked = self._asked_names(question, passages)
        self.question_stems = _stems(question)
        self.question_plain = set(tokenize(question))  # without the acronyms _stems adds
        self._claim_vectors: dict[str, np.ndarray] = {}

    @staticmethod
    def _asked_names(question: str, passages: Sequence[Chunk]) -> list[tuple[frozenset[str], str]]:
        """The names the question asks about: its capitalised words, and its words that the
        passages write capitalised mid-sentence ("nasa" when a passage says "NASA")."""
        capitalised = {w.lower() for p in passages for w in re.findall(r"(?<=[\w,;] )[A-Z][\w-]+", p.text)}
        names = [_name_key(m.group()) for m in _NAME.finditer(question) if m.start() > 0]
        names += [_name_key(w) for w in re.findall(r"[\w-]+", question) if w.lower() in capitalised and not w[0].isupper()]
        return [n for n in names if n[0]]

    def prime(self, claims: Sequence[Claim]) -> None:
        """Embed every window and claim in two batches (tiny batches are slow on CPU)."""
        if self.embed is None:
            return
        try:
            texts = [w.text for p in self.passages for w in p.windows]
            vectors = np.asarray(self.embed(texts), dtype=float) if texts else np.zeros((0, 1))
            at = 0
            for p in self.passages:
                p.vectors, at = vectors[at:at + len(p.windows)], at + len(p.windows)
            bodies = list(dict.fromkeys(c.text for c in claims))
            if bodies:
                self._claim_vectors.update(zip(bodies, np.asarray(self.embed(bodies), dtype=float)))
        except Exception:
            log.warning("embedding failed during citation checks; using word overlap", exc_info=True)
            self.embed = None

    def support(self, claim: Claim, group: Sequence[int]) -> Support | None:
        """The best window of the passages of `group` that states `claim`, or None. The names the
        question asks about are required of the answer sentence (`claim.answers`) only."""
        if not claim.stems or set(tokenize(claim.text)) <= self.question_plain:
            return None  # nothing, or the question said back ("In the postfix source do i find qshape", Qwen 0.5B)
        best = None
        for i in group:
            passage = self.passages[i]
            for k, window in enumerate(passage.windows):
                share = self._states(claim, passage, window)
                if share is not None and passage.vectors is not None and claim.text in self._claim_vectors:
                    cosine = float(passage.vectors[k] @ self._claim_vectors[claim.text])
                    if (cosine + share) / 2 < EMBED_MIN_SUPPORT:
                        share = None
                if share is not None and (best is None or share > best.share):
                    best = Support(i, share, window.start, window.end)
        return best

    def support_jointly(self, claim: Claim, group: Sequence[int]) -> Support | None:
        """Support from the passages of `group` together: the window of each that shares most
        words with the claim, taken as one window (a sentence joining facts of two passages)."""
        parts = [max(self.passages[i].windows, key=lambda w: len(w.stems & claim.stems), default=None) for i in group]
        if any(p is None for p in parts):
            return None
        joined = _Window(parts[0].start, parts[0].end, " ".join(p.text for p in parts),
                         set().union(*(p.stems for p in parts)), set().union(*(p.numbers for p in parts)),
                         " ".join(p.original for p in parts))
        heading = _Passage([], set().union(*(self.passages[i].heading for i in group)))
        share = self._states(claim, heading, joined)
        return None if share is None else Support(group[0], share, parts[0].start, parts[0].end)

    def _states(self, claim: Claim, passage: _Passage, window: _Window) -> float | None:
        """The share of the claim's words the window holds, if it holds every name, number,
        quoted phrase and subject word of the claim and the names asked about; else None."""
        if not claim.numbers <= window.numbers:
            return None
        if any(q not in window.text for q in claim.quoted):
            return None
        if claim.negated and not _NEGATION.search(window.text):
            return None
        if claim.first_person and not re.search(r"\b(?:i|we|me|my|our)\b", window.text):
            return None
        # Names and the subject must be in the window itself: the title names what the whole
        # document is about ("Russia to leave the ISS"), and Qwen 0.5B turned "the United States,
        # Canada and European space agencies said" into "Russia, Canada and European space agencies".
        for stems, raw in claim.names + (self.asked if claim.answers else []) + claim.subject:
            if not (stems <= window.stems or _starts_word(raw, window.text)):
                return None
        known = window.stems | passage.heading
        # What the claim says of its names must be there too, not only the names: "Garth Kean
        # married Merrill Kean" (Qwen 0.5B) shares every name with "The son of Garth Kean is
        # Merrill Kean" and nothing else.
        said = set(tokenize(" ".join(w for w in re.findall(r"[\w'’-]+", claim.text) if not w[0].isupper())))
        if said and not said & known:
            return None
        # Names in the same order, read with "X's N" as "N of X": "Newton Haight's husband is
        # Charmain Haight" (Qwen 0.5B) reverses "The husband of Charmain Haight is Newton Haight".
        # A reversal in the passive ("Rogozin was succeeded by Borisov") is dropped with it: the
        # extractive answer is shown instead, which costs a fluent answer, never a right one.
        if len(claim.names) >= 2 and not _same_order(claim, window, said):
            return None
        if not _keeps_subject(claim, window):
            return None
        share = len(claim.stems & known) / len(claim.stems)
        # And most of what it adds to the question: "Jan Tooley's husband is personal assistant"
        # (Qwen 0.5B, asked Bernice Tooley's husband's job) holds half its words in "The husband
        # of Bernice Tooley is Jan Tooley", but neither word of the job.
        added = set(tokenize(claim.text)) - self.question_plain
        if added and len(added & known) / len(added) < OVERLAP_MIN_SHARE:
            return None
        return share if share >= OVERLAP_MIN_SHARE else None

    def sole_strong(self, claim: Claim) -> Support | None:
        """The one passage that states `claim` strongly, or None when none or several do
        (passages quoting the same window, as overlapping chunks do, count once)."""
        found = [s for i in range(len(self.passages)) if (s := self.support(claim, [i])) and s.share >= STRONG_SHARE]
        windows = {self._window_text(s) for s in found}
        return found[0] if len(windows) == 1 else None

    def _window_text(self, s: Support) -> str:
        return next(w.text for w in self.passages[s.passage].windows if (w.start, w.end) == (s.start, s.end))


@dataclass
class _Sentence:
    text: str  # as written by the model, markers included
    support: Support
    cited: list[int] = field(default_factory=list)  # passage indices (0-based) it keeps, in order
    added: bool = False  # the citation was given by the check, not written by the model


def _renumber(text: str, mapping: dict[int, int], cited: list[int], added: bool) -> str:
    """Rewrite the [n] markers of one sentence with the final numbers, drop those of passages that
    do not state it, and append the marker of a passage given to an unmarked sentence."""

    def repl(m: re.Match) -> str:
        numbers = []
        for n in re.findall(r"\d+", m.group()):
            new = mapping.get(int(n) - 1) if int(n) - 1 in cited else None
            if new is not None and new not in numbers:
                numbers.append(new)
        lead = m.group()[: len(m.group()) - len(m.group().lstrip())]
        return lead + "".join(f"[{n}]" for n in numbers) if numbers else ""

    text = tidy_spacing(MARKER_RUN.sub(repl, text))
    if added:
        m = re.search(r"[.!?]+[\"'”’)]*$", text)
        cut = m.start() if m else len(text)
        text = f"{text[:cut]} [{mapping[cited[0]]}]{text[cut:]}"
    return text


# A sentence cut off (by the token limit, or copied mid-passage by a base model): "… At the same
# time, the [2]" (Gemma 3 270M). It may be "stated" word for word and still says nothing.
_COMPLETE = re.compile(r"[.!?:;\"”’)\]]$")


def _check(checker: SupportChecker, text: str, n_passages: int, answers: bool) -> _Sentence | None:
    """The sentence with the passages that state it, or None: drop it."""
    if not _COMPLETE.search(strip_markers(text).rstrip()):
        return None
    claim = Claim.of(text, answers)
    marked = [n - 1 for n in marker_numbers(text) if 1 <= n <= n_passages]
    cited = list(dict.fromkeys(marked))
    if cited:  # keep the markers of the passages that state it by themselves
        states = [(i, s) for i in cited if (s := checker.support(claim, [i]))]
        if states:
            return _Sentence(text, states[0][1], [i for i, _ in states])
        if len(cited) > 1 and (joint := checker.support_jointly(claim, cited)) is not None:
            return _Sentence(text, joint, cited)  # "A succeeded B and said C [1][2]": one part from each
    sole = checker.sole_strong(claim)
    if sole is not None:
        return _Sentence(MARKER_RUN.sub("", text).rstrip(), sole, [sole.passage], added=True)
    return None


def verify_reply(question: str, passages: list[Chunk], scores: list[float], reply: str, name: str,
                 embed: Callable[[list[str]], np.ndarray] | None) -> Answer | str:
    """The reply as an Answer holding only what the passages state, or why to fall back."""
    reply = MARKER_VARIANT.sub(r"[\1]", THINKING.sub("", reply or "")).strip()
    if _is_refusal(reply):
        return NO_ANSWER

    checker = SupportChecker(question, passages, embed)
    split = [split_sentences(line) for line in reply.splitlines()]  # [] for a blank line
    said = [s for sentences in split for s in sentences]
    if said and _refuses(said[0]):
        return NO_ANSWER  # what follows a refusal is an echo of the passages (Gemma 270M), not an answer
    claims = [s for s in said if not _refuses(s)]
    checker.prime([Claim.of(s) for s in claims])
    lines: list[list[_Sentence]] = []
    total = dropped = 0
    first_dropped = None
    for sentences in split:
        kept: list[_Sentence] = []
        for text in sentences:
            if _refuses(text):  # next to claims, "I couldn't find this" says nothing
                continue
            total += 1
            lead_in = strip_markers(text).endswith(":")  # "Here is what the documents say:"
            checked = _check(checker, text, len(passages), answers=first_dropped is None and not lead_in)
            if checked is None:
                dropped += 1
                log.debug("LLM %s: dropped as not stated by the passages: %s", name, text)
            else:
                kept.append(checked)
            if first_dropped is None and not lead_in:
                first_dropped = checked is None
        lines.append(kept)

    if dropped:
        log.info("LLM %s: dropped %d of %d sentences as not stated by the passages", name, dropped, total)
    if not any(lines):
        return NOTHING_SUPPORTED
    if first_dropped:
        return ANSWER_UNSUPPORTED
    if _ASKS_VALUE.search(question) and not any(_VALUE.search(strip_markers(s.text)) for kept in lines for s in kept):
        return NO_VALUE

    mapping: dict[int, int] = {}  # passage index -> final citation number
    spans: dict[int, Support] = {}  # passage index -> the span highlighted in its citation
    for kept in lines:
        for s in kept:
            for i in s.cited:
                mapping.setdefault(i, len(mapping) + 1)
            spans.setdefault(s.support.passage, s.support)
    # Lines whose sentences were all dropped go; blank lines between paragraphs stay.
    text_lines = [
        " ".join(_renumber(s.text, mapping, s.cited, s.added) for s in kept)
        for kept, sentences in zip(lines, split)
        if kept or not sentences
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(text_lines)).strip()
    citations = []
    for i, n in mapping.items():
        span = spans.get(i)
        citations.append(citation_for(passages[i], n, scores[i] if i < len(scores) else 0.0,
                                      span.start if span else None, span.end if span else None))
    return Answer(question, text, False, citations, name)


def _norm(text: str) -> str:
    return " ".join(words(text))


def disagreement(answer: Answer, reference: Answer) -> str | None:
    """Why a verified LLM answer must not be shown next to the extractive `reference` for the
    same question, or None when they agree: where the extractive answerer answers, the LLM must
    give its short answer ("Rogozin") or rest on the sentence it highlighted. A verified sentence
    is one the passages state, not one that answers the question: Qwen 0.5B answered "who did
    Borisov replace?" with a copied sentence about Russia leaving the ISS. Where the extractive
    answerer refuses, so does the LLM answer: of the four such answers Qwen 0.5B gave to ISS
    questions, two answered unanswerable questions ("when will NASA leave the ISS?" with Russia's
    2024) and two were right."""
    if reference.refused:
        return REFERENCE_REFUSED
    if not reference.citations:
        return None
    if reference.lead:
        lead = _norm(reference.lead)
        return None if lead and lead in _norm(answer.text) else f"{DISAGREES} ({reference.lead})"
    spans = [(c.source, c.start + c.span_start, c.start + c.span_end) for c in reference.citations
             if c.span_start is not None and c.span_end is not None]
    if not spans:
        return None
    cited = [(c.source, c.start + c.span_start, c.start + c.span_end) for c in answer.citations
             if c.span_start is not None and c.span_end is not None]
    # Every sentence the extractive answer highlighted, not only its first: the answer is often
    # in the second ("… the flush(8) daemon moves all deferred mail …"), and Qwen 0.5B restated
    # the first alone, which was shown in place of a right answer (Postfix test split).
    for source, s, e in spans:
        if not any(source == cs and s < ce and cs_start < e for cs, cs_start, ce in cited):
            return f"{DISAGREES} (another sentence)"
    return None
