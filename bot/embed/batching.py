"""Token-length batching, shared by every engine.

Texts are tokenised once, sorted by *token* length and batched by a token budget:
sentence-transformers sorts by character length, which on real chunks (code, tables) leaves ~35%
of the computed tokens as padding; token order leaves ~5%.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bot.embed.model import DIM

# Texts per forward pass are limited by padded tokens, so short texts batch wider: 32 full-length
# chunks or up to 128 sentences (measured: benchmarks/embed.py).
BATCH_TOKENS = 32 * 256
MAX_BATCH = 128
# Inputs up to this many tokens in total go to the ONNX engine when it is there (a question is
# ~10, the answerer's sentences ~500); ingest groups are far larger.
SMALL_INPUT_TOKENS = 4096
# Small inputs run in near-unpadded batches: the answerer's ~16 sentences of 5–100 tokens padded
# to the longest cost 2.7x more than batches of <= 256 tokens (ONNX Runtime's per-call overhead
# is well under a millisecond).
SMALL_BATCH_TOKENS = 256
# OpenVINO runs fastest at 16 full-length texts per call (measured: 59 chunks/s vs 53 at 32).
OPENVINO_BATCH_TOKENS = 16 * 256


def token_batches(lengths: list[int], batch_tokens: int = BATCH_TOKENS, max_batch: int = MAX_BATCH) -> list[list[int]]:
    """Indices grouped into batches of similar token length, longest first, each batch's padded
    size (count × longest) within `batch_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) >= max_batch or (len(current) + 1) * longest > batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def total_tokens(encodings: Sequence) -> int:
    return sum(len(e.ids) for e in encodings)


def padded(encodings: Sequence, batch: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) of the texts `batch` indexes, zero-padded to the longest."""
    longest = max(len(encodings[i].ids) for i in batch)
    ids = np.zeros((len(batch), longest), dtype=np.int64)
    mask = np.zeros((len(batch), longest), dtype=np.int64)
    for row, i in enumerate(batch):
        e = encodings[i].ids
        ids[row, :len(e)] = e
        mask[row, :len(e)] = 1
    return ids, mask


def normalise(vectors: np.ndarray) -> np.ndarray:
    """float32 unit rows (re-normalised in fp32: bf16 rounding leaves norms a hair off 1)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return vectors


BatchFn = Callable[[int], None]  # called with the number of texts of each batch once it is done


def run_batched(encodings: Sequence, batch_tokens: int,
                forward: Callable[[np.ndarray, np.ndarray], np.ndarray], on_batch: BatchFn | None = None) -> np.ndarray:
    """Unit vectors (len(encodings), DIM), in input order: `forward(ids, mask)` on each token batch,
    then `on_batch(texts in it)` (progress)."""
    out = np.empty((len(encodings), DIM), dtype=np.float32)
    for batch in token_batches([len(e.ids) for e in encodings], batch_tokens):
        ids, mask = padded(encodings, batch)
        out[batch] = forward(ids, mask)
        if on_batch is not None:
            on_batch(len(batch))
    return normalise(out)
