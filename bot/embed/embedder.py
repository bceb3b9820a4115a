"""Step 3a, embed: text → L2-normalised vectors with the packaged all-MiniLM-L6-v2.

`Embedder` chooses an engine (engines.py) from an `EngineRegistry` (registry.py) per call:

The precision an index was built with is stored in the index and is the arithmetic of its
document vectors. Large inputs (ingest) run on OpenVINO in that precision, else ONNX Runtime for
fp32, else torch. Short inputs (a question, a handful of sentences) go to the fp32 ONNX engine in
either case: fp32 is the reference the bf16 document vectors are within 1e-4 cosine of, so
rankings are unchanged (measured in benchmarks/embed.py). The answerer's candidate sentences are
ranked with int8 vectors where available (never stored, never searched).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from bot.embed.batching import SMALL_BATCH_TOKENS, SMALL_INPUT_TOKENS, BatchFn, total_tokens
from bot.embed.engines import Engine
from bot.embed.model import DIM, MODEL_NAME
from bot.embed.registry import EngineRegistry


class Embedder(Embeddings):
    """LangChain `Embeddings` over the packaged model; engines load on first use, in `registry`
    (default: the process-wide `EngineRegistry.default()`, shared by every Embedder)."""

    def __init__(self, precision: str = "auto", batch_size: int = 32, registry: EngineRegistry | None = None) -> None:
        self.registry = registry if registry is not None else EngineRegistry.default()
        # "auto" is resolved when first needed (it may run the once-per-CPU probe): a question-only
        # embedder never needs it, since questions are embedded in fp32 whatever the index's.
        self._precision = precision if precision == "auto" else self.registry.resolve_precision(precision)
        self.batch_size = batch_size  # full-length texts per batch on torch; shorter ones batch wider
        self.model_name = MODEL_NAME
        self._ingest_engine: str | None = None  # the name of the engine large inputs ran on, once known

    @property
    def precision(self) -> str:
        """The index's precision: its arithmetic for document vectors ("int8", "bf16", "fp32")."""
        if self._precision == "auto":
            self._precision = self.registry.resolve_precision("auto")
        return self._precision

    @property
    def settings(self) -> dict:
        """What must match between ingest and query time, and the engine that embeds the index's
        chunks (for the record: the precision is the arithmetic); stored in the index."""
        return {"model": self.model_name, "precision": self.precision, "dim": DIM, "normalized": True,
                "engine": self._ingest_engine or self.registry.planned_ingest_engine(self.precision)}

    def warm_up(self) -> None:
        """Load what answering questions needs: the tokenizer, the ONNX sessions (the export and
        the int8 sentence copy are made first where they are not in the cache yet: a few seconds,
        once, without torch), or the torch model where ONNX Runtime is off or unavailable."""
        self.registry.tokenizer()
        if self.registry.onnx_fp32() is None:
            self.registry.prepare_torch()
        self.registry.onnx_int8()

    def _torch_batch_tokens(self) -> int:
        return max(1, self.batch_size) * self.registry.max_seq_length()

    def engine_for_ingest(self) -> Engine:
        """The engine for large inputs in the index's precision: OpenVINO, else ONNX Runtime for
        fp32, else torch (loaded on first use)."""
        engine = self.registry.ingest(self.precision, self._torch_batch_tokens())
        self._ingest_engine = engine.name
        return engine

    def engine_for(self, encodings: Sequence) -> Engine:
        """The engine `embed` runs these tokenised texts on: fp32 ONNX Runtime for small inputs
        (torch where it is off or unavailable), the ingest engine for large ones."""
        if total_tokens(encodings) <= SMALL_INPUT_TOKENS:
            return (self.registry.onnx_fp32(SMALL_BATCH_TOKENS)
                    or self.registry.torch(self.precision, self._torch_batch_tokens()))
        return self.engine_for_ingest()

    @property
    def ingest_engine(self) -> str:
        """Which engine embeds large inputs (loads it): for reports and benchmarks."""
        return self.engine_for_ingest().name

    def embed(self, texts: list[str], show_progress: bool = False, on_batch: BatchFn | None = None) -> np.ndarray:
        """float32 array (len(texts), 384), unit length. Small inputs run on ONNX Runtime in fp32
        when it is there; large ones (ingest) on OpenVINO, else torch, in the index's precision.
        `on_batch(n)` is called as each batch of n texts is done (ingest progress);
        `show_progress` is ignored (callers and wrappers of this method pass it)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):
            # A text repeated (boilerplate chunks: 0.1% of the Python docs' tokens) is embedded once.
            position = {text: i for i, text in enumerate(unique)}
            vectors = self.embed(unique, on_batch=on_batch)
            if on_batch is not None:
                on_batch(len(texts) - len(unique))
            return vectors[[position[text] for text in texts]]
        encodings = self.registry.tokenizer().encode_batch(list(texts))
        engine = self.engine_for(encodings)
        return engine.run(encodings) if on_batch is None else engine.run(encodings, on_batch)

    def embed_for_ranking(self, texts: list[str]) -> np.ndarray:
        """Vectors for ranking a few sentences against a question at answer time: int8 where
        available (cosine ~0.99 to fp32, half the time), else `embed`. Never for the index."""
        engine = self.registry.onnx_int8() if texts else None
        if engine is None:
            return self.embed(texts)
        return engine.run(self.registry.tokenizer().encode_batch(list(texts)))

    # LangChain's Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()
