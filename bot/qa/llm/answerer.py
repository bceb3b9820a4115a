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
from bot.qa.llm.prompts import ANSWER_PROMPT, CONDENSE_PROMPT, HISTORY_ANSWER_CHARS, HISTORY_TURNS, answer_inputs
from bot.qa.llm.verify import THINKING, verify_reply
from bot.schema import Answer, Chunk, Turn
from bot.text import strip_markers
from bot.threads import in_thread

log = logging.getLogger(__name__)

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
    ):
        self.name = name  # goes to Answer.answerer, e.g. "llm:openai:gpt-4o-mini"
        self.timeout_s = timeout_s
        self.embed = embed  # L2-normalised vectors, one row per text
        self.answer_chain = ANSWER_PROMPT | model | StrOutputParser()
        self.condense_chain = CONDENSE_PROMPT | model | StrOutputParser()

    def answer(
        self,
        question: str,
        passages: list[Chunk],
        scores: list[float],
        history: list[Turn] | None = None,
        on_fallback: FallbackFn | None = None,
    ) -> Answer | None:
        """The verified LLM answer, or None when the caller should fall back (`on_fallback` is
        then told why, in a few words)."""
        if not passages:
            return None
        inputs = answer_inputs(question, passages, history)
        started = time.monotonic()
        try:
            (reply,) = in_thread(lambda: [self.answer_chain.invoke(inputs)], deadline_s=self.timeout_s)
        except Exception as e:
            self._fell_back(_failure(e, self.timeout_s), on_fallback)
            return None
        return self._verified(question, passages, scores, reply, started, on_fallback)

    def stream(
        self,
        question: str,
        passages: list[Chunk],
        scores: list[float],
        history: list[Turn] | None = None,
        on_fallback: FallbackFn | None = None,
    ) -> Iterator[str | Answer | None]:
        """Yield the reply's text deltas as they arrive (unverified), then one last item: the
        verified Answer, or None meaning "fall back" (the streamed text must then be discarded;
        `on_fallback` is told why).
        """
        if not passages:
            yield None
            return
        inputs = answer_inputs(question, passages, history)
        started = time.monotonic()
        parts: list[str] = []
        deltas = in_thread(lambda: self.answer_chain.stream(inputs), deadline_s=self.timeout_s)
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
        yield self._verified(question, passages, scores, "".join(parts), started, on_fallback)

    def condense(self, question: str, history: list[Turn] | None) -> str:
        """Rewrite a follow-up question into a standalone one; the question itself when there is
        no history or on any failure."""
        if not history:
            return question
        conversation = "\n".join(
            f"User: {t.question}\nAssistant: {strip_markers(t.answer)[:HISTORY_ANSWER_CHARS]}"
            for t in history[-HISTORY_TURNS:]
        )
        inputs = {"conversation": conversation, "question": question}
        try:
            (reply,) = in_thread(lambda: [self.condense_chain.invoke(inputs)], deadline_s=self.timeout_s)
        except Exception as e:
            log.warning("LLM %s could not condense the question: %s", self.name, describe(e))
            return question
        reply = THINKING.sub("", reply)
        lines = [line.strip() for line in reply.splitlines() if line.strip()]
        rewritten = re.sub(r"^(standalone question|question)\s*:\s*", "", lines[0], flags=re.I) if lines else ""
        rewritten = rewritten.strip().strip("\"'“”‘’`").strip()
        if not rewritten or len(rewritten) > max(300, 4 * len(question)):
            return question
        return rewritten

    def _verified(
        self, question: str, passages: list[Chunk], scores: list[float], reply: str, started: float,
        on_fallback: FallbackFn | None = None,
    ) -> Answer | None:
        generated = time.monotonic()
        try:
            result = verify_reply(question, passages, scores, reply, self.name, self.embed)
        except Exception:  # a bug here must not cost the user an answer: fall back
            log.exception("LLM %s: verifying the reply failed, falling back", self.name)
            self._fell_back("its reply could not be verified", on_fallback)
            return None
        if result is None:
            self._fell_back("nothing in its reply could be checked against the passages", on_fallback)
            return None
        result.timings_ms = {"llm": (generated - started) * 1000, "verify": (time.monotonic() - generated) * 1000}
        return result

    def _fell_back(self, reason: str, on_fallback: FallbackFn | None) -> None:
        log.warning("LLM %s %s; answered without it", self.name.removeprefix("llm:"), reason)
        if on_fallback is not None:
            on_fallback(reason)
