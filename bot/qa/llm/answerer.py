"""The optional LLM answerer: a chat model writes the answer from the retrieved passages, then
every cited sentence is checked against the passage it cites (bot/qa/llm/verify.py).

The QA pipeline calls this one when an LLM is configured (`QABOT_LLM=PROVIDER:MODEL`) and falls
back to the extractive answer whenever it returns None: on errors, time-outs, malformed output,
or when no sentence of the reply survives verification.

    model = make_chat_model("openai:gpt-4o-mini", timeout_s=30)
    llm = LLMAnswerer(model, name="llm:openai:gpt-4o-mini", timeout_s=30)
    answer = llm.answer(question, passages, scores, history)  # Answer | None
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser

from bot.errors import describe
from bot.qa.condense import condense as rule_condense
from bot.qa.condense import disagreement, is_follow_up
from bot.qa.llm.prompts import (ANSWER_PROMPT, CONDENSE_PROMPT, HISTORY_ANSWER_CHARS, HISTORY_TURNS, PROMPT_PASSAGES,
                                SentenceScorer, answer_inputs, word_overlap)
from bot.qa.llm import verify
from bot.qa.llm.verify import THINKING, verify_reply
from bot.schema import Answer, Chunk, Turn
from bot.text import split_sentences, strip_markers
from bot.threads import in_thread

log = logging.getLogger(__name__)
notices = logging.getLogger("bot.notice")  # what the user is told while it works: stderr, in the CLI

FallbackFn = Callable[[str], None]  # told why the LLM's answer was not used


def _failure(error: BaseException, timeout_s: float) -> str:
    """Why a call to the model failed, in a few words: unreachable, timed out, or its error."""
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    names = {type(e).__name__ for e in (error, error.__cause__, error.__context__) if e is not None}
    if names & {"APIConnectionError", "ConnectError", "ConnectionError", "ConnectionRefusedError", "ConnectTimeout"}:
        return f"unreachable ({describe(error)})"
    return f"failed ({describe(error)})"

class LLMAnswerer:
    """Writes answers with a chat model and keeps only what its cited passages support."""

    def __init__(
        self,
        model: BaseChatModel,
        name: str,
        timeout_s: float = 60,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        prompt_passages: int = PROMPT_PASSAGES,
    ):
        self.name = name  # goes to Answer.answerer, e.g. "llm:openai:gpt-4o-mini"
        self.timeout_s = timeout_s
        self.embed = embed  # L2-normalised vectors, one row per text
        self.prompt_passages = prompt_passages
        self.model = model
        self.condense_chain = CONDENSE_PROMPT | model | StrOutputParser()
        # Told (question, passages shown, the prompt's variables, whole reply) after each reply: how
        # transcripts are recorded.
        self.on_reply: Callable[[str, list[Chunk], dict, str], None] | None = None
        self._reported: set[str] = set()  # kinds of fallback already shown on stderr

    def _scorer(self) -> SentenceScorer:
        """Sentence relevance for choosing what the model is shown: cosine similarity with the
        question (embeddings see that "succeeded" answers "replace"), plus a little for each shared
        word; word overlap alone without embeddings or when they fail."""
        if self.embed is None:
            return word_overlap
        cache: dict[str, float] = {}

        def score(question: str, sentences: list[str]) -> list[float]:
            new = [s for s in dict.fromkeys(sentences) if s not in cache]
            if new:
                try:
                    vectors = np.asarray(self.embed([question, *new]), dtype=float)
                except Exception:
                    log.warning("embedding failed while choosing passages; using word overlap", exc_info=True)
                    return word_overlap(question, sentences)
                cache.update(zip(new, (vectors[1:] @ vectors[0]).tolist()))
            overlap = word_overlap(question, sentences)
            return [cache[s] + 0.05 * o for s, o in zip(sentences, overlap)]

        return score

    def _choose(self, question: str, passages: list[Chunk], scores: list[float],
                scorer: SentenceScorer) -> tuple[list[Chunk], list[float]]:
        """The `prompt_passages` passages whose best sentence is most relevant, best first: the
        retrieval's top three often lack the answering sentence that a fourth or fifth holds
        ("who did Borisov replace?": every chunk's title names Borisov)."""
        if len(passages) <= self.prompt_passages:
            return passages, scores
        sentences = [split_sentences(" ".join(p.text.split())) or [p.text] for p in passages]
        flat = [s for group in sentences for s in group]
        relevance = iter(scorer(question, flat))
        best = [max(next(relevance) for _ in group) for group in sentences]
        order = sorted(range(len(passages)), key=lambda i: (-best[i], i))[:self.prompt_passages]
        return [passages[i] for i in order], [scores[i] for i in order]

    def _deltas(self, question: str, passages: list[Chunk], history: list[Turn] | None,
                inputs: dict) -> Iterator[str]:
        """The reply's text as it is written, always streamed and under the deadline: when the
        deadline passes, closing the stream closes the HTTP response, and a server that notices
        (llama.cpp's, vLLM, Ollama) stops generating instead of working on for nobody."""
        messages = ANSWER_PROMPT.format_messages(**inputs)

        def produce() -> Iterator[str]:
            # The model's own stream, closed explicitly: closing a LangChain chain's stream does
            # not close the HTTP response under it (measured: the fake server sent every chunk).
            stream = self.model.stream(messages)
            try:
                for chunk in stream:
                    yield chunk.text
            finally:
                stream.close()

        return in_thread(produce, deadline_s=self.timeout_s, name="qabot-llm")

    def answer(
        self,
        question: str,
        passages: list[Chunk],
        scores: list[float],
        history: list[Turn] | None = None,
        on_fallback: FallbackFn | None = None,
        reference: Answer | None = None,
    ) -> Answer | None:
        """The verified LLM answer, or None when the caller should fall back (`on_fallback` is
        then told why, in a few words). `reference`: the extractive answer to the same question,
        which a verified answer must agree with (`verify.disagreement`)."""
        final = None
        for item in self.stream(question, passages, scores, history, on_fallback, reference):
            if not isinstance(item, str):
                final = item
        return final

    def stream(
        self,
        question: str,
        passages: list[Chunk],
        scores: list[float],
        history: list[Turn] | None = None,
        on_fallback: FallbackFn | None = None,
        reference: Answer | None = None,
    ) -> Iterator[str | Answer | None]:
        """Yield the reply's text deltas as they arrive (unverified), then one last item: the
        verified Answer, or None meaning "fall back" (the streamed text must then be discarded;
        `on_fallback` is told why).
        """
        if not passages:
            yield None
            return
        started = time.monotonic()
        scorer = self._scorer()
        passages, scores = self._choose(question, passages, scores, scorer)
        inputs = answer_inputs(question, passages, history, scorer)
        parts: list[str] = []
        deltas = self._deltas(question, passages, history, inputs)
        try:
            for delta in deltas:
                if delta:
                    parts.append(delta)
                    yield delta
        except Exception as e:
            self._fell_back(_failure(e, self.timeout_s), on_fallback)
            yield None
            return
        finally:
            deltas.close()
        reply = "".join(parts)
        if self.on_reply is not None:
            self.on_reply(question, passages, inputs, reply)
        yield self._verified(question, passages, scores, reply, started, on_fallback, reference)

    def condense(self, question: str, history: list[Turn] | None) -> str:
        """Rewrite a follow-up question into a standalone one. A question the rule of
        bot/qa/condense.py does not take for a follow-up is left as asked (no call); the LLM's
        rewrite is used only where it agrees with the conversation (`condense.disagreement`),
        else, and on any failure, the rule-based rewrite is."""
        if not history or not is_follow_up(question):
            return question
        by_rule = rule_condense(question, history)
        conversation = "\n".join(
            f"User: {t.question}\nAssistant: {strip_markers(t.answer)[:HISTORY_ANSWER_CHARS]}"
            for t in history[-HISTORY_TURNS:]
        )
        inputs = {"conversation": conversation, "question": question}
        try:
            (reply,) = in_thread(lambda: [self.condense_chain.invoke(inputs)], deadline_s=self.timeout_s)
        except Exception as e:
            log.warning("LLM %s could not condense the question: %s", self.name, describe(e))
            return by_rule
        reply = THINKING.sub("", reply)
        lines = [line.strip() for line in reply.splitlines() if line.strip()]
        rewritten = re.sub(r"^(standalone question|question)\s*:\s*", "", lines[0], flags=re.I) if lines else ""
        rewritten = rewritten.strip().strip("\"'“”‘’`").strip()
        if not rewritten or len(rewritten) > max(300, 4 * len(question)):
            return by_rule
        reason = disagreement(question, rewritten, history)
        if reason:
            log.info("LLM %s rewrote %r as %r, but %s; using %r", self.name, question, rewritten, reason, by_rule)
            return by_rule
        return rewritten

    def _verified(
        self, question: str, passages: list[Chunk], scores: list[float], reply: str, started: float,
        on_fallback: FallbackFn | None = None, reference: Answer | None = None,
    ) -> Answer | None:
        generated = time.monotonic()
        try:
            result = verify_reply(question, passages, scores, reply, self.name, self.embed)
            if isinstance(result, Answer) and reference is not None:
                result = verify.disagreement(result, reference) or result
        except Exception:  # a bug here must not cost the user an answer: fall back
            log.exception("LLM %s: verifying the reply failed, falling back", self.name)
            self._fell_back("its reply could not be verified", on_fallback)
            return None
        if isinstance(result, str):
            self._fell_back(result, on_fallback)
            return None
        result.timings_ms = {"llm": (generated - started) * 1000, "verify": (time.monotonic() - generated) * 1000}
        return result

    def _fell_back(self, reason: str, on_fallback: FallbackFn | None) -> None:
        """Say why the extractive answer is shown: on stderr (a warning) the first time in this
        session for each kind of reason, in the debug log after that; `on_fallback` every time
        (`ask --json`'s fallback_reason, `eval`'s count)."""
        kind = reason.split("(")[0].split(" after ")[0].strip()
        if kind in self._reported:
            log.debug("LLM %s %s; answered without it", self.name.removeprefix("llm:"), reason)
        else:
            self._reported.add(kind)
            notices.warning("LLM %s %s; answered without it (said once per session)",
                            self.name.removeprefix("llm:"), reason)
        if on_fallback is not None:
            on_fallback(reason)
