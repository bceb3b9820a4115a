"""Step 5, answer: question (+ conversation) → `Answer` with numbered, quoted sources.

`QA.answer()` (and `QA.stream()`, which ends the same way) is the one path every front end uses.
Three plain steps, each replaceable:

    condense (follow-ups → standalone query) → retrieve (dense + BM25, RRF) → answer

The answer step is the extractive answerer, or the LLM answerer when one is configured, with the
extractive answer as its fallback.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from bot.config import Settings, cache_dir
from bot.embed import Embedder
from bot.errors import IndexProblem
from bot.ingest.manifest import bm25_cache_dir, embedding_settings_check, open_manifest
from bot.ingest.status import index_exists
from bot.qa.condense import condense
from bot.qa.entities import unmentioned
from bot.qa.extractive import PASSAGES_SCANNED, ExtractiveAnswerer, chain_answers, refusal
from bot.qa.hops import split_two_hop
from bot.qa.question import clean_question, strip_chatter
from bot.qa.retrieve import HybridRetriever
from bot.qa.vocabulary import EnglishWords, QueryVocabulary
from bot.schema import Answer, Hit, Turn
from bot.store.chroma import LazyVectorStore, VectorStore


def make_llm_answerer(spec: str, embedder, timeout_s: float = 60.0):
    """The optional LLM answerer for PROVIDER:MODEL; raises LLMConfigError (one line) if unusable.
    Imported here, not at the top: langchain's chat models cost ~1 s of start-up that the
    extractive path never needs."""
    from bot.qa.llm.answerer import LLMAnswerer
    from bot.qa.llm.provider import make_chat_model

    return LLMAnswerer(make_chat_model(spec, timeout_s=timeout_s), name=f"llm:{spec}", timeout_s=timeout_s,
                       embed=embedder.embed)


MAX_HOPS = 3


@dataclass
class _Run:
    """One question on its way through the steps."""

    question: str
    history: list[Turn]
    k: int
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    query: str = ""
    hits: list[Hit] = field(default_factory=list)
    vector: np.ndarray | None = None


class QA:
    """Loads the index, embedder and (optionally) an LLM once; answers many questions."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, llm_answerer=None,
                 english: EnglishWords | None = None) -> None:
        self.settings = settings
        self.english = english or EnglishWords(cache_dir())
        if not index_exists(settings):
            raise IndexProblem(f"no index at {settings.index}; run `qabot ingest` first")
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
            raise IndexProblem(f"the index was embedded in {precision}, the query embedder runs {self.embedder.precision}")
        # Embedded: Chroma is opened only if the BM25 cache cannot answer alone (bot/qa/retrieve.py).
        self.store = VectorStore(settings) if settings.chroma_url else LazyVectorStore(settings)
        self.generation = generation
        self.llm_answerer = llm_answerer
        self._build(generation)

    def _build(self, generation) -> None:
        self.retriever = HybridRetriever(self.store, self.embedder, bm25_cache_dir(self.settings), generation)
        bm25 = self.retriever.bm25
        self.vocabulary = QueryVocabulary(bm25.nouns.vocabulary, bm25.has_term, self.english)
        self.extractive = ExtractiveAnswerer(self.embedder, bm25.idf, bm25.has_term, self.english, bm25.nouns)

    def refresh(self) -> bool:
        """Pick up a newer index generation (after an ingest); True if it changed."""
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

    # -- the steps

    def _condense(self, run: _Run) -> None:
        t0 = time.perf_counter()
        if self.llm_answerer is not None and run.history:
            run.query = self.llm_answerer.condense(run.question, run.history)
        else:
            run.query = condense(run.question, run.history)
        run.timings["condense"] = (time.perf_counter() - t0) * 1e3

    def _retrieve(self, run: _Run) -> None:
        run.hits, run.vector = self.retriever.retrieve(run.query, max(run.k, PASSAGES_SCANNED), run.timings)

    def _extractive(self, run: _Run) -> Answer:
        result = self.extractive.answer(run.query, run.vector, run.hits, asked=run.question)
        result.question = run.question
        return result

    @staticmethod
    def _fallen_back(reference: Answer, reasons: list[str]) -> Answer:
        """The extractive answer shown instead of the LLM's, saying why (the last reason given)."""
        reference.fallback_reason = reasons[-1] if reasons else None
        return reference

    def _passages(self, run: _Run) -> tuple[list, list[float]]:
        passages = run.hits[:run.k]
        return [h.chunk for h in passages], [h.score for h in passages]

    def _start(self, question: str, history, k) -> _Run:
        asked = self.vocabulary.correct(strip_chatter(clean_question(question)))
        run = _Run(asked, list(history or []), k or self.settings.k)
        self._condense(run)
        self._retrieve(run)
        return run

    def _finish(self, run: _Run, result: Answer, answer_started: float) -> Answer:
        run.timings["answer"] = (time.perf_counter() - answer_started) * 1e3
        if run.query and run.query != run.question:
            result.standalone_question = run.query
        result.retrieved = result.retrieved or run.hits
        timings = {**result.timings_ms, **run.timings, "total": (time.perf_counter() - run.started) * 1e3}
        result.timings_ms = {key: round(value, 2) for key, value in timings.items()}
        return result

    # -- the entry points

    def _unmentioned(self, run: _Run) -> Answer | None:
        """A refusal naming the question's name (a person, an identifier) that no retrieved
        passage mentions: answering from a passage about someone else would be wrong."""
        texts = [f"{h.chunk.title}\n{h.chunk.section or ''}\n{h.chunk.source}\n{h.chunk.text}" for h in run.hits]
        missing = unmentioned(run.question, self.retriever.bm25.nouns, texts, self.english.common)
        if missing is None:
            return None
        return refusal(run.question, run.hits, text=f"No document mentions {missing}.")

    def _two_hop(self, run: _Run, question: str | None = None, depth: int = 0) -> Answer | None:
        """The answer to a question whose first step is a name (bot/qa/hops.py), every passage
        cited; None when the question has no such step or a hop finds no answer. The rest of the
        question may itself start with a name ("… husband's mother's hobby"): up to three hops."""
        hops = split_two_hop(question or run.question)
        if hops is None or depth >= MAX_HOPS - 1:
            return None
        first = self._hop(hops.first, run)
        name = self.extractive.named_answer(first, hops.first) if not first.refused else None
        if name is None:
            return None
        rest = hops.template.format(name)
        second = self._two_hop(run, rest, depth + 1) or self._hop(rest, run)
        if second.refused:
            return None
        return chain_answers(run.question, first, second)

    def _hop(self, question: str, run: _Run) -> Answer:
        hop = _Run(question, [], run.k, query=question)
        self._retrieve(hop)
        run.timings["retrieve_hops"] = run.timings.get("retrieve_hops", 0.0) + sum(hop.timings.values())
        result = self._extractive(hop)
        result.retrieved = hop.hits
        return result

    def answer(self, question: str, history: list[Turn] | None = None, k: int | None = None) -> Answer:
        """The one entry point: every front end calls this (or `stream`, which ends the same way)."""
        run = self._start(question, history, k)
        t0 = time.perf_counter()
        result = self._unmentioned(run) or self._two_hop(run)
        reasons: list[str] = []
        if result is None and self.llm_answerer is not None and run.hits:
            reference = self._extractive(run)  # what the LLM's answer must agree with, and the fallback
            result = self.llm_answerer.answer(run.question, *self._passages(run), run.history, reasons.append,
                                              reference) or self._fallen_back(reference, reasons)
        return self._finish(run, result or self._extractive(run), t0)

    def stream(self, question: str, history: list[Turn] | None = None, k: int | None = None) -> Iterator[str | Answer]:
        """Like `answer`, but with an LLM yields its text deltas as they are written (unverified),
        then always the final `Answer`: the verified LLM answer, or the extractive fallback.
        Without an LLM it yields just the final `Answer`."""
        run = self._start(question, history, k)
        t0 = time.perf_counter()
        final = self._unmentioned(run) or self._two_hop(run)
        reasons: list[str] = []
        if final is None and self.llm_answerer is not None and run.hits:
            reference = self._extractive(run)  # what the LLM's answer must agree with, and the fallback
            for item in self.llm_answerer.stream(run.question, *self._passages(run), run.history, reasons.append,
                                                 reference):
                if isinstance(item, str):
                    yield item
                else:
                    final = item  # the verified Answer, or None: fall back
            final = final or self._fallen_back(reference, reasons)
        yield self._finish(run, final or self._extractive(run), t0)
