"""Step 5, answer: question (+ conversation) → `Answer` with numbered, quoted sources.

`QA.answer()` is the one entry point every front end uses. It is an LCEL chain of small steps:

    condense (follow-ups → standalone query) → retrieve (dense + BM25, RRF) → answer

The default answerer is extractive and needs no LLM: it scores each sentence of the retrieved
passages by meaning (the embedding model at sentence level), by the question's words it contains
(IDF-weighted, so rare words count most), and by whether it holds what the question type asks
for (when → a date, how many/much → a number, who → a name); the best sentence(s) become the
answer, cited inline. When no sentence is both close in meaning and about the question's own
terms, it refuses and shows the closest passages instead.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from bot.config import Settings
from bot.retrieve import STOPWORDS, Hit, tokenize, tokenize_document
from bot.schema import REFUSAL_TEXT, Answer, Chunk, Citation, Turn

MAX_QUESTION_CHARS = 4000

# Scoring weights and refusal thresholds, calibrated on the gold sets (tests/gold/); see
# README "Tuning" for how. Sentence score = weighted sum of the signals below.
W_SEMANTIC = 0.55
W_LEXICAL = 0.35
W_TYPE = 0.12
W_RANK = 0.05
# Answer only if the best sentence is close in meaning, or fairly close and about the question's terms.
MIN_SEMANTIC = 0.55
MIN_SEMANTIC_WITH_TERMS = 0.35
MIN_COVERAGE = 0.45
SECOND_SENTENCE_RATIO = 0.92  # a second sentence is added when it scores this close to the best
MAX_REDUNDANCY = 0.75  # ... and is not this similar in meaning to the first
CONTEXT_TERM_WEIGHT = 0.3  # in a follow-up, words from the conversation count half as much as the asked ones
PASSAGES_SCANNED = 4  # the answer is looked for in the top passages only
SENTENCES_EMBEDDED = 8  # ... among the sentences that share most with the question. Embedding
# them is most of the answer time (int8, ~3 ms each on 2 cores); 8 rather than 10 lost nothing on
# either gold set (refusal recall on the Python docs rose .50 → .58), 6 lost a citation.


class QuestionError(ValueError):
    """A question we won't run (empty, too long); the message is one line for the user."""


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


# --- question types ---------------------------------------------------------------------------

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


# --- sentences ----------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?。])[\"”’)\]]*\s+(?=[\"“‘(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*•#]|\s*\d+[.)]\s)")
_DATELINE = re.compile(r"^[A-Z][A-Za-z .]+,\s+[A-Z][a-z]+\.?\s+\d{1,2}\s+\([^)]{1,60}\)\s+")


@dataclass
class Sentence:
    hit: Hit
    start: int  # offsets within the chunk text
    end: int
    text: str


_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`*+#:.])\1{2,}\s*$")
_NOT_PROSE_LINE = re.compile(r"^\s*(?:>>>|\.\.\.\s|\.\. |#{1,6}\s|:\w+:|\$ |[|+]-)")


def _prose_blocks(text: str):
    """(start, end) of runs of prose lines. Headings (a line over an underline, or Markdown #),
    underlines, reST directives, field lists and interactive code are not answers: they end a
    block and are left out."""
    lines = text.split("\n")
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    block_start = None
    for i, line in enumerate(lines):
        heading = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip()
        excluded = not line.strip() or _UNDERLINE.match(line) or _NOT_PROSE_LINE.match(line) or heading
        if excluded:
            if block_start is not None:
                yield block_start, starts[i] - 1
                block_start = None
        elif block_start is None:
            block_start = starts[i]
    if block_start is not None:
        yield block_start, len(text)


def answer_like(sentence: str) -> bool:
    """A sentence that can answer: not a question (FAQ headings are), mostly words, not code."""
    if sentence.rstrip().endswith("?") or sentence.rstrip().endswith("::"):
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in sentence)
    return letters >= 0.75 * len(sentence)


def split_sentences(hit: Hit) -> list[Sentence]:
    text = hit.chunk.text
    out = []
    for block_start, block_end in _prose_blocks(text):
        block = text[block_start:block_end]
        pos = 0
        for m in list(_SENTENCE_END.finditer(block)) + [None]:
            end = m.start() if m else len(block)
            piece = block[pos:end]
            lead = len(piece) - len(piece.lstrip())
            body = piece.strip()
            if len(body) >= 12 and len(body.split()) >= 3 and answer_like(body):
                start = block_start + pos + lead
                out.append(Sentence(hit, start, start + len(body), body))
            pos = m.end() if m else len(block)
    return out


# --- the extractive answerer -------------------------------------------------------------------

@dataclass
class Scored:
    sentence: Sentence
    score: float
    semantic: float
    coverage: float
    typed: bool
    vector: np.ndarray


class ExtractiveAnswerer:
    def __init__(self, embedder, idf) -> None:
        self.embedder = embedder
        self.idf = idf  # term → inverse document frequency, from the BM25 index

    def score(self, question: str, query_vector: np.ndarray, hits: list[Hit], asked: str | None = None) -> list[Scored]:
        """`question` is the standalone query; `asked`, for a follow-up, what the user typed:
        the sentence must answer what was asked, in the context the query adds."""
        sentences = [s for hit in hits[:PASSAGES_SCANNED] for s in split_sentences(hit)]
        if not sentences:
            return []
        sentences = self._prefilter(question, asked, sentences)
        follow_up = asked is not None and asked != question
        texts = [s.text for s in sentences] + ([asked] if follow_up else [])
        vectors = self.embedder.embed_for_ranking(texts)
        if follow_up:
            vectors, asked_vector = vectors[:-1], vectors[-1]
            # Rank by both; whether the documents support an answer at all is judged on the better.
            semantic = 0.5 * (vectors @ query_vector) + 0.5 * (vectors @ asked_vector)
            support = np.maximum(vectors @ query_vector, vectors @ asked_vector)
        else:
            semantic = support = vectors @ query_vector
        asked_terms = set(tokenize(asked)) if follow_up else None
        weights = {t: self.idf(t) * (1.0 if asked_terms is None or t in asked_terms else CONTEXT_TERM_WEIGHT)
                   for t in dict.fromkeys(tokenize(question))}
        total = sum(weights.values()) or 1.0
        kind = question_type(asked or question)
        scored = []
        for s, sem, sup, vector in zip(sentences, semantic, support, vectors):
            s_terms = set(tokenize_document(f"{s.text}\n{s.hit.chunk.section or ''}\n{s.hit.chunk.title}"))
            coverage = sum(w for t, w in weights.items() if t in s_terms) / total
            typed = bool(span_candidates(kind, s.text, question))
            score = (W_SEMANTIC * float(sem) + W_LEXICAL * coverage + W_TYPE * typed + W_RANK / s.hit.rank)
            scored.append(Scored(s, score, float(sup), coverage, typed, vector))
        scored.sort(key=lambda x: -x.score)
        return scored

    def _prefilter(self, question: str, asked: str | None, sentences: list[Sentence]) -> list[Sentence]:
        """The sentences worth embedding: most question words (IDF-weighted), then passage rank."""
        if len(sentences) <= SENTENCES_EMBEDDED:
            return sentences
        terms = {t: self.idf(t) for t in set(tokenize(question)) | set(tokenize(asked or ""))}

        def lexical(s: Sentence) -> float:
            words = set(tokenize_document(s.text))
            return sum(w for t, w in terms.items() if t in words)

        ranked = sorted(sentences, key=lambda s: (-lexical(s), s.hit.rank, s.start))
        return ranked[:SENTENCES_EMBEDDED]

    def short_answer(self, question: str, query_vector: np.ndarray, sentence: str, asked: str | None = None) -> str | None:
        """The date/number/name the question asks for; among several, the one whose clause is
        closest in meaning to the question ("after 2024", not "on the 26th")."""
        spans = span_candidates(question_type(asked or question), sentence, question)
        if not spans:
            return None
        if len(spans) > 1:
            clauses = [clause_around(sentence, span) for span in spans]
            closeness = self.embedder.embed_for_ranking(clauses) @ query_vector
            spans = [spans[int(np.argmax(closeness))]]
        return sentence[spans[0][0]:spans[0][1]].strip(" ,;")

    @staticmethod
    def supported(best: Scored) -> bool:
        return best.semantic >= MIN_SEMANTIC or (best.semantic >= MIN_SEMANTIC_WITH_TERMS and best.coverage >= MIN_COVERAGE)

    def answer(self, question: str, query_vector: np.ndarray, hits: list[Hit], asked: str | None = None) -> Answer:
        scored = self.score(question, query_vector, hits, asked)
        if not scored or not self.supported(scored[0]):
            return refusal(question, hits)
        chosen = [scored[0]]
        for cand in scored[1:]:
            if cand.score < SECOND_SENTENCE_RATIO * scored[0].score:
                break
            # A second sentence must add something: not the same text again, not a paraphrase.
            # (Requiring it to add question words as well cost 8 points of answer accuracy on
            # the Python-docs set: the sentence after the best one often holds the answer.)
            if self.supported(cand) and not _overlaps(cand.sentence, chosen[0].sentence) \
                    and float(cand.vector @ chosen[0].vector) < MAX_REDUNDANCY:
                chosen.append(cand)
                break
        citations: list[Citation] = []
        parts: list[str] = []
        for scored_sentence in chosen:
            s = scored_sentence.sentence
            n = _cite(citations, s, scored_sentence.score)
            parts.append(f"{_tidy(s.text)} [{n}]")
        text = " ".join(parts)
        short = self.short_answer(question, query_vector, _tidy(chosen[0].sentence.text), asked)
        if short and short.lower() not in text[: len(short) + 2].lower():
            text = f"{short[0].upper()}{short[1:]} — {text}"
        return Answer(question=question, text=text, refused=False, citations=citations)


def _overlaps(a: Sentence, b: Sentence) -> bool:
    """Same document region (neighbouring chunks overlap, so the same sentence can appear twice)."""
    ca, cb = a.hit.chunk, b.hit.chunk
    return ca.source == cb.source and ca.start + a.start < cb.start + b.end and cb.start + b.start < ca.start + a.end


def _tidy(sentence: str) -> str:
    """The sentence as an answer: no news dateline in front, single spaces, a closing stop."""
    text = _DATELINE.sub("", sentence)
    text = " ".join(text.split()).replace(" .", ".")
    text = text.rstrip()
    if text and text[-1] not in ".!?”\"')":
        text += "."
    return text[0].upper() + text[1:] if text else text


def _cite(citations: list[Citation], s: Sentence, score: float) -> int:
    chunk = s.hit.chunk
    for c in citations:
        if c.source == chunk.source and c.start == chunk.start:
            return c.n
    citations.append(citation_for(chunk, len(citations) + 1, score, s.start, s.end))
    return len(citations)


def citation_for(chunk: Chunk, n: int, score: float, span_start=None, span_end=None) -> Citation:
    return Citation(n=n, source=chunk.source, title=chunk.title, section=chunk.section, page=chunk.page,
                    quote=chunk.text, start=chunk.start, end=chunk.end, score=round(float(score), 4),
                    span_start=span_start, span_end=span_end)


def refusal(question: str, hits: list[Hit], closest: int = 3) -> Answer:
    citations = [citation_for(h.chunk, i, h.score) for i, h in enumerate(hits[:closest], start=1)]
    return Answer(question=question, text=REFUSAL_TEXT, refused=True, citations=citations)


def make_llm_answerer(spec: str, embedder, timeout_s: float = 60.0):
    """The optional LLM answerer for PROVIDER:MODEL; raises LLMConfigError (one line) if unusable."""
    from bot.llm import LLMAnswerer, make_chat_model

    return LLMAnswerer(make_chat_model(spec, timeout_s=timeout_s), name=f"llm:{spec}", timeout_s=timeout_s,
                       embed=embedder.embed)


# --- the pipeline -------------------------------------------------------------------------------

class QA:
    """Loads the index, embedder and (optionally) an LLM once; answers many questions."""

    def __init__(self, settings: Settings, embedder=None, llm_answerer=None) -> None:
        from bot.embed import Embedder
        from bot.index import IndexError_, VectorStore, embedding_settings_check, index_exists, open_manifest

        self.settings = settings
        if not index_exists(settings):
            raise IndexError_(f"no index at {settings.index}; run `qabot ingest` first")
        manifest = open_manifest(settings)
        try:
            precision = embedding_settings_check(manifest, settings)
            generation = manifest.get("generation", 0)
        finally:
            manifest.close()
        self.embedder = embedder or Embedder(precision=precision)
        if llm_answerer is None and settings.llm:
            llm_answerer = make_llm_answerer(settings.llm, self.embedder, settings.llm_timeout)
        if self.embedder.precision != precision:
            raise IndexError_(f"the index was embedded in {precision}, the query embedder runs {self.embedder.precision}")
        self.store = VectorStore(settings)
        self.generation = generation
        self.llm_answerer = llm_answerer
        self._build(generation)

    def _build(self, generation) -> None:
        from langchain_core.runnables import RunnableLambda

        from bot.retrieve import HybridRetriever

        bm25_dir = None if self.settings.chroma_url else self.settings.index / "bm25"
        self.retriever = HybridRetriever(self.store, self.embedder, bm25_dir, generation)
        self.extractive = ExtractiveAnswerer(self.embedder, self.retriever.bm25.idf)
        self.chain = (
            RunnableLambda(self._condense_step, name="condense")
            | RunnableLambda(self._retrieve_step, name="retrieve")
            | RunnableLambda(self._answer_step, name="answer")
        )

    def refresh(self) -> bool:
        """Pick up a newer index generation (after an ingest); True if it changed."""
        from bot.index import open_manifest

        manifest = open_manifest(self.settings)
        try:
            generation = manifest.get("generation", 0)
        finally:
            manifest.close()
        if generation == self.generation:
            return False
        self.generation = generation
        self._build(generation)
        return True

    def warm_up(self) -> None:
        self.embedder.warm_up()
        self.embedder.embed(["warm up"])
        self.embedder.embed_for_ranking(["warm up", "the first run of a session is slow"])

    # The chain's steps: each takes and returns a dict (the LCEL state).
    def _condense_step(self, state: dict) -> dict:
        from bot.followup import condense

        t0 = time.perf_counter()
        if self.llm_answerer is not None and state["history"]:
            query = self.llm_answerer.condense(state["question"], state["history"])
        else:
            query = condense(state["question"], state["history"])
        state["timings"]["condense"] = (time.perf_counter() - t0) * 1e3
        state["trace"]["query"] = query
        return {**state, "query": query}

    def _retrieve_step(self, state: dict) -> dict:
        hits, vector = self.retriever.retrieve(state["query"], max(state["k"], PASSAGES_SCANNED), state["timings"])
        return {**state, "hits": hits, "vector": vector}

    def _answer_step(self, state: dict) -> Answer:
        t0 = time.perf_counter()
        hits = state["hits"]
        result = None
        if self.llm_answerer is not None and hits:
            passages = hits[: state["k"]]
            result = self.llm_answerer.answer(state["question"], [h.chunk for h in passages],
                                              [h.score for h in passages], state["history"])
        if result is None:
            result = self.extractive.answer(state["query"], state["vector"], hits, asked=state["question"])
            result.question = state["question"]
        state["timings"]["answer"] = (time.perf_counter() - t0) * 1e3
        return result

    def _start(self, question: str, history, k) -> dict:
        """The chain's initial state. `timings` and `trace` are shared by the steps' copies."""
        return {"question": clean_question(question), "history": list(history or []), "k": k or self.settings.k,
                "timings": {}, "trace": {}, "started": time.perf_counter()}

    def _finish(self, state: dict, result: Answer) -> Answer:
        query = state["trace"].get("query")
        if query and query != state["question"]:
            result.standalone_question = query
        timings = {**result.timings_ms, **state["timings"], "total": (time.perf_counter() - state["started"]) * 1e3}
        result.timings_ms = {key: round(value, 2) for key, value in timings.items()}
        return result

    def answer(self, question: str, history: list[Turn] | None = None, k: int | None = None) -> Answer:
        """The one entry point: every front end calls this (or `stream`, which ends the same way)."""
        state = self._start(question, history, k)
        return self._finish(state, self.chain.invoke(state))

    def stream(self, question: str, history: list[Turn] | None = None, k: int | None = None):
        """Like `answer`, but with an LLM yields its text deltas as they are written (unverified),
        then always the final `Answer`: the verified LLM answer, or the extractive fallback.
        Without an LLM it yields just the final `Answer`."""
        state = self._start(question, history, k)
        if self.llm_answerer is None:
            yield self._finish(state, self.chain.invoke(state))
            return
        state = self._retrieve_step(self._condense_step(state))
        hits, final = state["hits"], None
        if hits:
            passages = hits[: state["k"]]
            for item in self.llm_answerer.stream(state["question"], [h.chunk for h in passages],
                                                 [h.score for h in passages], state["history"]):
                if isinstance(item, str):
                    yield item
                else:
                    final = item  # the verified Answer, or None: fall back
        if final is None:
            final = self.extractive.answer(state["query"], state["vector"], hits, asked=state["question"])
            final.question = state["question"]
        yield self._finish(state, final)
