"""The engines: three runtimes computing the same thing, the model's mean-pooled, L2-normalised
output, behind one interface (`Engine`: a `name` and `run(encodings) -> unit float32 vectors`).
benchmarks/embed.py measures them.

* OpenVINO, for ingest. It runs the model in bf16 where the CPU computes bf16 natively (AMX or
  AVX512-BF16; fp32 elsewhere), with fused attention: 2.6x stock sentence-transformers on a
  2-core Zen 4, where torch bf16 autocast reached 1.9x (its CPU attention kernel is a quarter
  of the time at head size 32). Checked against fp32 ONNX Runtime before use (cosine ≥ 0.999).
  Or in int8: int8 weights (export.quantize_weights_int8) with activations quantized on the fly,
  1.35x OpenVINO fp32 on a Sapphire Rapids (bf16 is faster there still); or in static int8
  (int8-static: the same weights, activation ranges calibrated beforehand, static_int8.py), 1.12x
  bf16 on a quiet Zen 4 (1.24x under load). Either is used where the probe (probe.py) measures it fastest and it passes its
  gate (INT8_INGEST_*).
* ONNX Runtime, fp32, for questions and the answerer's sentences: a few milliseconds per
  question and no torch import, so `qabot ask` starts quickly. An int8 copy of the same graph
  ranks the answerer's candidate sentences (twice as fast on short inputs).
* torch, the fallback when neither runtime is available (bf16 autocast where native), and the
  exporter of the ONNX file only for a model bert_onnx.py does not know: for the packaged one
  that file is written straight from the weights, without torch (export.py).

This module only builds and runs engines; which one is loaded, checked and used is
`EngineRegistry`'s business (registry.py).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from bot.embed import model
from bot.embed.batching import BATCH_TOKENS, OPENVINO_BATCH_TOKENS, BatchFn, normalise, run_batched

# Fidelity floors: a candidate engine whose vectors stray further from its reference on the probe
# texts is not used.
ONNX_MIN_COSINE = 0.9999  # the ONNX export vs its reference (bert_onnx.NumpyEngine, or torch fp32)
# int8 vectors only rank a question's candidate sentences (never stored, never searched): mean
# cosine to fp32 0.992 on Python-docs sentences, min 0.97; twice as fast on short inputs.
INT8_MIN_COSINE = 0.95
OPENVINO_MIN_COSINE = 0.999  # bf16 lands at ~0.99996 of fp32; anything further is a broken build
# The int8 ingest engine (int8 weights, activations quantized on the fly) stores its vectors, so it
# must stay close to fp32 on every probe text (measured on 128 Python-docs chunks: mean 0.9993,
# min 0.9975); the gate, mean >= 0.99 and min >= 0.97, refuses a build or CPU that strays.
INT8_INGEST_MEAN_COSINE = 0.99
INT8_INGEST_MIN_COSINE = 0.97
# Activations are quantized per group of this many values: 64 ran at 9.7 chunks/s, 32 at 9.0 and
# none (weights decompressed to fp32) at 5.6, fp32 at 6.2 (2 vCPUs under load 8, Sapphire Rapids).
DYNAMIC_QUANTIZATION_GROUP = 64

PROBE_TEXTS = ["When will Russia leave the International Space Station?",
               "os.path.join(path, *paths) joins one or more path segments intelligently.",
               "x",
               "The quick brown fox jumps over the lazy dog. " * 30]


class Engine(Protocol):
    """Tokenised texts (`tokenizers` Encodings) → float32 (n, DIM) unit vectors, in input order;
    `on_batch(n)` after each batch of n texts (progress)."""

    name: str

    def run(self, encodings: Sequence, on_batch: BatchFn | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class _Batched:
    """What the engines share: a name (their runtime and precision) and a token budget per batch."""

    runtime: ClassVar[str]
    precision: str = "fp32"
    batch_tokens: int = BATCH_TOKENS

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.precision}"

    def batched(self, batch_tokens: int):
        """This engine with another token budget per batch."""
        return replace(self, batch_tokens=batch_tokens)


@dataclass(frozen=True)
class OnnxEngine(_Batched):
    """An ONNX Runtime session of the exported graph (precision "fp32", or "int8" for its copy)."""

    runtime: ClassVar[str] = "ONNX Runtime"
    session: Any = field(kw_only=True)

    def run(self, encodings: Sequence, on_batch: BatchFn | None = None) -> np.ndarray:
        return run_batched(encodings, self.batch_tokens, lambda ids, mask: self.session.run(
            None, {"input_ids": ids, "attention_mask": mask})[0], on_batch)


@dataclass(frozen=True)
class OpenVinoEngine(_Batched):
    """The exported graph compiled by OpenVINO for `precision`."""

    runtime: ClassVar[str] = "OpenVINO"
    batch_tokens: int = OPENVINO_BATCH_TOKENS
    compiled: Any = field(kw_only=True)

    def run(self, encodings: Sequence, on_batch: BatchFn | None = None) -> np.ndarray:
        request = self.compiled.create_infer_request()
        return run_batched(encodings, self.batch_tokens, lambda ids, mask: request.infer(
            {"input_ids": ids, "attention_mask": mask})[0], on_batch)


@dataclass(frozen=True)
class TorchEngine(_Batched):
    """The model on torch; `module()` gives the mean-pooled module (loading it on first use, so
    that choosing this engine costs nothing until it runs). bf16 runs under autocast."""

    runtime: ClassVar[str] = "torch"
    module: Callable[[], Any] = field(kw_only=True)

    def run(self, encodings: Sequence, on_batch: BatchFn | None = None) -> np.ndarray:
        # Imported here: torch costs ~5 s of start-up; the question path never needs it.
        import torch

        module = self.module()

        def forward(ids, mask):
            return module(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return run_batched(encodings, self.batch_tokens, forward, on_batch)


class Remembered:
    """An engine whose vectors for a given list of texts are computed once and remembered (for a
    reference that several candidates are checked against on the same texts)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self._seen: dict[tuple, np.ndarray] = {}

    def run(self, encodings: Sequence, on_batch: BatchFn | None = None) -> np.ndarray:
        key = tuple(tuple(e.ids) for e in encodings)
        if key not in self._seen:
            self._seen[key] = self.engine.run(encodings)
        if on_batch is not None:
            on_batch(len(encodings))
        return self._seen[key].copy()


def mean_pooled(bert):
    """The model's whole computation on token ids around `bert` (a transformers model):
    transformer → mean over real tokens → L2 norm (what modules.json describes: Transformer,
    Pooling(mean), Normalize). In eval mode."""
    # Imported here: torch costs ~5 s of start-up; the question path never needs it.
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled.float(), dim=-1)

    return MeanPooled(bert).eval()


def new_session(path: Path):
    """An ONNX Runtime CPU session of the graph at `path`, with a pool that does not spin."""
    ort = model.import_onnxruntime()

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(os.cpu_count() or 1, 8))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: a spinning pool steals a core from whatever runs
    # next (measured: the int8 sentence pass ran at 62 ms right after a question on a spinning
    # fp32 session, 33 ms without spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_available() -> bool:
    """Whether OpenVINO is installed (found, not imported: the question path never loads it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def compile_openvino(path: Path, precision: str, native_bf16: bool = False):
    """The model at `path` compiled for the CPU: the ONNX export for "bf16" (native bf16 kernels)
    or "fp32"; for "int8", the IR with int8 weights (export.quantize_weights_int8), its
    activations quantized on the fly so that the matrix products run int8 x int8 (VNNI/AMX where
    the CPU has them); for "int8-static", the IR with int8 weights and calibrated activation
    ranges (static_int8.py), whose remaining floating-point operations run in bf16 where the CPU
    computes it natively (`native_bf16`: 59.9 against 46.6 chunks/s with the f32 hint on a Zen 4,
    load 1.8-2.7, and as close to fp32)."""
    # Imported here: OpenVINO is only for ingest; questions never load it.
    import openvino

    bf16 = precision == "bf16" or (precision == "int8-static" and native_bf16)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                              "PERFORMANCE_HINT": "LATENCY"}
    if precision == "int8":
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_QUANTIZATION_GROUP
    core = openvino.Core()
    return core.compile_model(core.read_model(str(path)), "CPU", config)


def openvino_version() -> str:
    """The installed OpenVINO's version, read from its metadata (importing it costs ~0.3 s)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "none"


def cosines(tokenizer, reference: Engine, candidate: Engine, texts: Sequence[str] = tuple(PROBE_TEXTS)) -> np.ndarray:
    """Cosine between the two engines' vectors of each text."""
    encodings = tokenizer.encode_batch(list(texts))
    expected, got = normalise(reference.run(encodings)), normalise(candidate.run(encodings))
    return (expected * got).sum(axis=1)


def agree_on_probes(tokenizer, reference: Engine, candidate: Engine, min_cosine: float) -> bool:
    """Whether two engines give vectors at least this close on the probe texts."""
    return float(cosines(tokenizer, reference, candidate).min()) >= min_cosine
