"""The files derived from the packaged weights, kept in a cache directory: the ONNX export (fp32)
both runtimes read, and its int8 quantization.

The export is made once, from the packaged weights (the `onnx` package is needed, nothing is
downloaded), and checked against torch fp32 (cosine ≥ 0.9999) before it is used; the int8 copy
(dynamic quantization, per-channel weights: two seconds, once per machine) is checked against the
fp32 export. Each is written to a temporary file and renamed into place (atomic: a concurrent
reader sees the whole file or none), and a file that fails its check is deleted.

The file name keys on the model, the export version, the token window and the weights, so an
export made for other weights is never picked up.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.embed.model import MODEL_NAME, import_onnxruntime

ONNX_EXPORT_VERSION = "1"  # bump when the exported graph changes

log = logging.getLogger(__name__)


def onnx_model_file(cache_dir: Path, model_dir: str, max_seq_length: int) -> Path:
    """The exported model for *these* weights: the key changes if the packaged model does."""
    weights = Path(model_dir) / "model.safetensors"
    h = hashlib.sha256(f"{MODEL_NAME}|{ONNX_EXPORT_VERSION}|{max_seq_length}".encode())
    try:
        st = weights.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update((Path(model_dir) / "config.json").read_bytes())
    except OSError:
        pass
    return Path(cache_dir) / "onnx" / h.hexdigest()[:16] / "model.onnx"


def int8_model_file(onnx_file: Path) -> Path:
    return onnx_file.with_name("model.int8.onnx")


def write_checked(target: Path, make: Callable[[Path], None], agrees: Callable[[Path], bool],
                  what: str, fallback: str) -> Path | None:
    """`make(tmp)`, then `agrees(tmp)`, then rename it to `target`; None (and no file left) where
    anything fails: these files are optional speed-ups that must never break ingest."""
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp.onnx")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        make(tmp)
        if not agrees(tmp):
            log.warning("%s strays from its reference; %s", what, fallback)
            tmp.unlink(missing_ok=True)
            return None
        os.replace(tmp, target)  # atomic: a concurrent reader sees the whole file or none
        return target
    except Exception as exc:  # an optional speed-up: never let it break ingest
        log.warning("could not make the %s (%s); %s", what, exc, fallback)
        tmp.unlink(missing_ok=True)
        return None


def export_onnx(target: Path, load_module: Callable[[], Any], agrees: Callable[[Path], bool]) -> Path | None:
    """Export `load_module()` (engines.mean_pooled around the packaged model) to ONNX fp32 at
    `target`, kept only if `agrees(file)`; None where `onnx`/`onnxruntime` is missing or anything
    goes wrong (torch is used then)."""
    if target.exists():
        return target
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)

        import_onnxruntime()
    except ImportError:
        return None

    def make(tmp: Path) -> None:
        # Imported here: torch costs ~5 s of start-up; the question path never needs it.
        import torch

        module = load_module()
        bert = module.bert
        # Eager attention traces the padding mask faithfully (the SDPA path special-cases an
        # all-ones mask at trace time); restored afterwards for the torch engine.
        previous = bert.config._attn_implementation
        ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
        mask = (ids != 0).long()
        try:
            bert.set_attn_implementation("eager")
            with torch.inference_mode(False), torch.no_grad(), _warnings_ignored():
                torch.onnx.export(
                    module, (ids, mask), str(tmp), dynamo=False, opset_version=17,
                    input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                    dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                  "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                )
        finally:
            bert.set_attn_implementation(previous)

    return write_checked(target, make, agrees, "ONNX export of the embedding model", "using torch")


def quantize_onnx(source: Path, target: Path, agrees: Callable[[Path], bool]) -> Path | None:
    """Dynamic int8 quantization (per-channel weights) of the fp32 export `source` at `target`,
    kept only if `agrees(file)`; None where that cannot be done."""
    if target.exists():
        return target
    if not source.exists():
        return None
    try:
        # Imported here: the quantizer (and the onnx package it pulls in) is needed once per
        # machine, never on the question path.
        import_onnxruntime()
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None

    def make(tmp: Path) -> None:
        with root_records_dropped():  # the quantizer logs advice on the root logger
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)

    return write_checked(target, make, agrees, "int8 embedding model", "ranking sentences in fp32")


@contextlib.contextmanager
def root_records_dropped(below: int = logging.ERROR) -> Iterator[None]:
    """Drop records under `below` that this thread logs straight on the root logger (onnxruntime's
    quantizer calls logging.info/warning with advice). Other threads, and every named logger
    (records propagating from a child skip the root logger's filters), are untouched; unlike
    logging.disable, nothing changes for the rest of the process."""
    root, thread = logging.getLogger(), threading.get_ident()

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= below or record.thread != thread

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


@contextlib.contextmanager
def _warnings_ignored() -> Iterator[None]:
    """The tracer's advice (dynamic shapes, the legacy exporter) is not for our users."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
