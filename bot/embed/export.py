"""The files derived from the packaged weights, kept in a cache directory shared by every index:
the ONNX export (fp32) both runtimes read, its dynamic int8 quantization (ONNX Runtime, ranks the
answerer's sentences), its weight-only int8 copy for OpenVINO (the int8 ingest engine) and its
static int8 copy (int8 weights and calibrated activation ranges, static_int8.py).

The export is made once, from the packaged weights (the `onnx` package is needed, nothing is
downloaded): written straight from the safetensors file (bert_onnx.py, no torch) and checked
against a numpy reference of the model (cosine ≥ 0.9999) before it is used; for a model that
writer does not know, exported by torch and checked against torch fp32 as before. The int8 copy
(dynamic quantization, per-channel weights: two seconds, once per machine) is checked against the
fp32 export. Each is written to a temporary file and renamed into place (atomic: a concurrent
reader sees the whole file or none), and a file that fails its check is deleted.

Each file has a `.sha256` sidecar written when it is made; a file whose bytes no longer match
it is deleted and made again before use (`verified`).

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
from bot.errors import one_line

ONNX_EXPORT_VERSION = "3"  # bump when the exported graph changes (3: written from the weights, bert_onnx)
INT8_WEIGHTS_VERSION = "2"  # bump when the weight quantization changes

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


def int8_weights_file(onnx_file: Path) -> Path:
    """The OpenVINO IR (.xml, with its .bin) of the export with int8 MatMul weights."""
    return onnx_file.with_name(f"model.int8w{INT8_WEIGHTS_VERSION}.xml")


def static_int8_file(onnx_file: Path) -> Path:
    """The OpenVINO IR of the export with int8 weights and calibrated int8 activations; its name
    keys on the calibration texts and the quantization's version (static_int8.calibration_key)."""
    from bot.embed.static_int8 import calibration_key

    return onnx_file.with_name(f"model.int8s-{calibration_key()}.xml")


def _parts(path: Path) -> list[Path]:
    """The files a model is made of: an IR's .xml and .bin, or one .onnx."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for part in _parts(path):
        with open(part, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def record_hash(path: Path) -> None:
    tmp = _sidecar(path).with_name(f"{_sidecar(path).name}.{os.getpid()}.tmp")
    tmp.write_text(_digest(path), encoding="ascii")
    os.replace(tmp, _sidecar(path))


def verified(path: Path) -> bool:
    """Whether the prepared model at `path` is there and its bytes match the hash recorded when
    it was made (sha256 of 90 MB: ~0.1 s). A file made before hashes were recorded (it passed its
    fidelity check when it was written, atomically) gets its hash recorded now. A file that does
    not match is deleted, with its sidecar, so that it is made again."""
    if not all(p.exists() for p in _parts(path)):
        return False
    try:
        if not _sidecar(path).exists():
            record_hash(path)
            return True
        if _sidecar(path).read_text(encoding="ascii").strip() == _digest(path):
            return True
    except OSError as exc:
        log.warning("cannot check %s (%s)", path, exc)
        return False
    log.warning("%s does not match the hash recorded when it was made; making it again", path)
    for p in [*_parts(path), _sidecar(path)]:
        p.unlink(missing_ok=True)
    return False


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
        record_hash(target)
        return target
    except Exception as exc:  # an optional speed-up: never let it break ingest
        log.warning("could not make the %s (%s); %s", what, exc, fallback)
        tmp.unlink(missing_ok=True)
        return None


def export_onnx(target: Path, model_dir: str, load_module: Callable[[], Any],
                agrees_direct: Callable[[Path], bool], agrees_torch: Callable[[Path], bool],
                load_weights: Callable[[], Any] | None = None) -> Path | None:
    """The fp32 ONNX graph of the packaged model at `target`: written straight from the weights
    (`load_weights()`, a bert_onnx.Bert, default: read from `model_dir`; bert_onnx.write_onnx, no
    torch) and kept only if `agrees_direct(file)` (the numpy reference);
    where this model is not one that writer knows, or that fails, exported from torch
    (`load_module()`: engines.mean_pooled around the packaged model) and kept only if
    `agrees_torch(file)`. None where `onnx`/`onnxruntime` is missing or both fail (torch is used
    then)."""
    if verified(target):
        return target
    try:
        import onnx  # noqa: F401  (both writers need it)

        import_onnxruntime()
    except ImportError:
        return None

    from bot.embed import bert_onnx

    why_not = bert_onnx.supported(model_dir)
    if why_not is None:
        # ~1 s instead of ~10 s through torch (see bert_onnx); torch is not even imported.
        made = write_checked(target, lambda tmp: bert_onnx.write_onnx(load_weights() if load_weights else model_dir, tmp),
                             agrees_direct,
                             "ONNX graph of the embedding model", "exporting it from torch instead")
        if made is not None:
            return made
    else:
        log.info("the ONNX graph is exported from torch: %s", why_not)
    return export_onnx_from_torch(target, load_module, agrees_torch)


def export_onnx_from_torch(target: Path, load_module: Callable[[], Any], agrees: Callable[[Path], bool]) -> Path | None:
    """Export `load_module()` (engines.mean_pooled around the packaged model) to ONNX fp32 at
    `target` with torch's exporter, kept only if `agrees(file)`; None where anything goes wrong."""

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
    if verified(target):
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


def quantize_weights_int8(source: Path, target: Path, agrees: Callable[[Path], bool]) -> Path | None:
    """The export `source` as an OpenVINO IR at `target` whose MatMul weights are int8 (symmetric,
    one scale per output channel), kept only if `agrees(file)`; None where OpenVINO is missing or
    anything goes wrong. Made with OpenVINO alone (0.5 s; NNCF's compress_weights makes the same
    pattern but costs a dependency). The CPU plugin runs these as int8 x int8 kernels when asked to
    quantize activations on the fly (engines.compile_openvino)."""
    def build(model) -> None:
        if int8_matmul_weights(model) == 0:
            raise ValueError("no MatMul weights to quantize")

    return _write_ir_checked(source, target, build, agrees, "int8 ingest model")


def quantize_static_int8(source: Path, target: Path, encodings, agrees: Callable[[Path], bool]) -> Path | None:
    """The export `source` as an OpenVINO IR at `target` with int8 weights (as quantize_weights_int8)
    and int8 activations whose ranges are measured on `encodings` (the tokenised calibration texts,
    static_int8.CALIBRATION_TEXTS: ~1 s), kept only if `agrees(file)`; None where OpenVINO is
    missing or anything goes wrong."""
    from bot.embed import static_int8

    def build(model) -> None:
        if int8_matmul_weights(model) == 0:
            raise ValueError("no MatMul weights to quantize")
        static_int8.quantize_activations(model, encodings)

    return _write_ir_checked(source, target, build, agrees, "static int8 ingest model")


def _write_ir_checked(source: Path, target: Path, build: Callable[[Any], None], agrees: Callable[[Path], bool],
                      what: str) -> Path | None:
    """`build(model)` on the export `source` read by OpenVINO, saved as an IR next to `target`,
    then `agrees(tmp)`, then both files renamed into place (the .xml last) and hashed; None (and no
    file left) where OpenVINO is missing, anything fails or it does not agree: an optional engine
    must never break ingest."""
    if verified(target):
        return target
    if not source.exists():
        return None
    try:
        # Imported here: OpenVINO is only for ingest; questions never load it.
        import openvino
    except ImportError:
        return None
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp.xml")
    try:
        model = openvino.Core().read_model(str(source))
        build(model)
        openvino.save_model(model, str(tmp), compress_to_fp16=False)
        if not agrees(tmp):
            log.warning("%s strays from fp32; not used", what)
            return None
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)  # the .xml last: it is what marks the pair complete
        record_hash(target)
        return target
    except Exception as exc:  # an optional engine: never let it break ingest
        log.warning("could not make the %s (%s)", what, one_line(exc))
        return None
    finally:
        for part in _parts(tmp):
            part.unlink(missing_ok=True)


def int8_matmul_weights(model) -> int:
    """Replace the constant 2-D MatMul weights of `model` (an openvino.Model; all but the
    down-projections) by int8 values
    times a per-output-channel fp32 scale (the decompression pattern the CPU plugin fuses into
    its FullyConnected kernels); the number replaced."""
    import numpy as np
    from openvino import Type
    from openvino import opset13 as ops

    replaced = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        weight = op.input_value(1).get_node()
        if weight.get_type_name() != "Constant":
            continue
        w = weight.get_data().astype(np.float32)
        if w.ndim != 2:
            continue
        axis = 1 if op.get_attributes().get("transpose_b", False) else 0  # the reduced (input) axis
        if w.shape[axis] > w.shape[1 - axis]:
            # Down-projections (the feed-forward output, 1536 -> 384) stay fp32: their inputs, after
            # GELU, have outliers. Measured on 136 Python-docs and phantom chunks: cosine to fp32
            # mean 0.99950 / min 0.99883 instead of 0.99918 / 0.99746, at 16.5 chunks/s vs 17.4.
            continue
        scale = np.abs(w).max(axis=axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        dequantized = ops.multiply(ops.convert(ops.constant(q), Type.f32), ops.constant(scale.astype(np.float32)))
        op.input(1).replace_source_output(dequantized.output(0))
        replaced += 1
    model.validate_nodes_and_infer_types()
    return replaced


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
