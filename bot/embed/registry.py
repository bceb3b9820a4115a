"""`EngineRegistry`: everything the embedder loads, owned by one object that is passed in.

It holds the tokenizer, the SentenceTransformer and its torch module, the ONNX Runtime fp32 and
int8 sessions, the OpenVINO compiled models per precision, the cache directory the export and
its int8 copy live in (export.py), the on/off switches and the CPU flags, and a lock per thing it
loads: each is loaded on first use, once, and kept. Engines are checked against their reference
before they are handed out (engines.py gives the floors); one that disagrees is never used.

The process-wide default (`EngineRegistry.default()`) is what an `Embedder` uses when it is given
none, so every Embedder in a process (ingest then answer in the CLI, the Discord bot) shares one
loaded model. A registry made with its own cache directory, switches, CPU flags or fidelity floors
is independent of it (tests, benchmarks).

"auto" precision is what a short probe measured fastest on this CPU (probe.py), remembered in
the cache directory per CPU flags.

Switches, read once, when the registry is made: QABOT_ONNX=0 keeps everything on torch (for
comparisons, or if ONNX Runtime misbehaves); QABOT_INT8=0 ranks the answerer's sentences with fp32
vectors instead; QABOT_OPENVINO=0 embeds ingest on torch (or ONNX Runtime for fp32) instead.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bot import config
from bot.embed import bert_onnx, engines, export, model, probe, static_int8
from bot.embed.bert_onnx import NumpyEngine
from bot.embed.batching import BATCH_TOKENS, SMALL_BATCH_TOKENS
from bot.embed.engines import Engine, OnnxEngine, OpenVinoEngine, TorchEngine
from bot.embed.probe import ProbeResult
from bot.errors import QabotError, one_line

log = logging.getLogger(__name__)
# What the user should hear about while it happens (the CLI shows these on stderr, the Discord bot
# in its log): making the ONNX export, the one slow step of a first run.
notices = logging.getLogger("bot.notice")
PREPARING = "Preparing the embedding model (once, a few seconds)…"
PROBING = "Measuring which embedding engine is fastest on this CPU (once, a few seconds)…"


@dataclass(frozen=True)
class EngineSwitches:
    """Which optional engines may be used. int8 and OpenVINO read the ONNX export, so they are
    off whenever `onnx` is."""

    onnx: bool = True
    int8: bool = True
    openvino: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "EngineSwitches":
        """QABOT_ONNX, QABOT_INT8, QABOT_OPENVINO (on unless 0/false/no/off; SettingError if bad)."""
        return cls(onnx=config.switch("QABOT_ONNX", env=env), int8=config.switch("QABOT_INT8", env=env),
                   openvino=config.switch("QABOT_OPENVINO", env=env))


@dataclass(frozen=True)
class FidelityFloors:
    """Least cosine (on the probe texts) to its reference for an engine to be used."""

    onnx: float = engines.ONNX_MIN_COSINE  # the export vs its reference (numpy; torch for a torch export)
    int8: float = engines.INT8_MIN_COSINE  # the int8 copy vs the fp32 export
    openvino: float = engines.OPENVINO_MIN_COSINE  # OpenVINO vs fp32 ONNX Runtime
    int8_ingest_mean: float = engines.INT8_INGEST_MEAN_COSINE  # OpenVINO int8 and int8-static vs fp32
    int8_ingest_min: float = engines.INT8_INGEST_MIN_COSINE  # ONNX Runtime, on probe.PASSAGES


_UNSET = object()


class _Lazy:
    """A value made by `make()` on first use, once, under its own lock."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = _UNSET
        self._lock = threading.Lock()

    @property
    def made(self) -> bool:
        return self._value is not _UNSET

    def get(self) -> Any:
        value = self._value
        if value is _UNSET:
            with self._lock:
                if self._value is _UNSET:
                    self._value = self._make()
                value = self._value
        return value

    def retry_if_none(self) -> None:
        """Forget a None result, so the next `get` tries again."""
        with self._lock:
            if self._value is None:
                self._value = _UNSET


class EngineRegistry:
    """The loaded model and engines of a process (or of a test); see the module docstring."""

    _default: ClassVar["EngineRegistry | None"] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, cache_dir: Path | str | None = None, switches: EngineSwitches | None = None,
                 cpu_flags: Iterable[str] | None = None, floors: FidelityFloors | None = None) -> None:
        """`cache_dir` default: bot.config.cache_dir(); `switches`: from the environment; `cpu_flags`:
        this machine's; `floors`: FidelityFloors(). Nothing is loaded until it is used."""
        self.cache_dir = Path(cache_dir) if cache_dir is not None else config.cache_dir()
        self.switches = switches if switches is not None else EngineSwitches.from_env()
        self.cpu_flags = frozenset(cpu_flags) if cpu_flags is not None else model.cpu_flags()
        self.floors = floors if floors is not None else FidelityFloors()
        self._tokenizer = _Lazy(model.load_tokenizer)
        self._max_seq_length = _Lazy(model.max_seq_length)
        self._sentence_transformer = _Lazy(model.load_sentence_transformer)
        self._torch_module = _Lazy(lambda: engines.mean_pooled(self.sentence_transformer()[0].auto_model))
        self._torch_prepared = _Lazy(self._prepare_torch)
        self._onnx_file = _Lazy(lambda: export.onnx_model_file(self.cache_dir, model.model_path(), self.max_seq_length()))
        self._onnx = _Lazy(self._load_onnx)
        self._int8 = _Lazy(self._load_int8)
        self._openvino = {p: _Lazy(lambda p=p: self._compile_openvino(p)) for p in model.PRECISIONS}
        self._probe = _Lazy(self._run_probe)
        # (mean, min) cosine to fp32 that the gate of each quantized precision measured here
        self.gate_cosines: dict[str, tuple[float, float]] = {}
        self._export_lock = threading.Lock()
        self._announced = False
        self._reference: engines.Remembered | None = None  # see fp32_reference
        self._gated: dict[str, OpenVinoEngine] = {}  # quantized engines their gate compiled, when made here

    @classmethod
    def default(cls) -> "EngineRegistry":
        """The process-wide registry (switches and cache directory from the environment, read
        when it is first asked for), shared by every Embedder that is given none."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = EngineRegistry()
        return cls._default

    def resolve_precision(self, requested: str = "auto") -> str:
        """An explicit precision as it is (checked); "auto": the probe's choice for this CPU
        (measured once per CPU, remembered in the cache), or model.resolve_precision's guess from
        the CPU flags where OpenVINO is off or missing."""
        if requested != "auto" or not self._openvino_on():
            return model.resolve_precision(requested, self.cpu_flags)
        result = self.probe()
        return result.choice if result is not None else model.resolve_precision(requested, self.cpu_flags)

    def _openvino_on(self) -> bool:
        return self.switches.onnx and self.switches.openvino and engines.openvino_available()

    # --- the probe ------------------------------------------------------------------------------

    def probe_file(self) -> Path:
        return probe.probe_file(self.cache_dir, self.cpu_flags, engines.openvino_version(),
                                f"{self.onnx_model_file().parent.name}|{export.INT8_WEIGHTS_VERSION}|"
                                f"{static_int8.calibration_key()}")

    def probe(self) -> ProbeResult | None:
        """Which precision ingest runs fastest in here (remembered per CPU); None without OpenVINO."""
        return self._probe.get()

    def _run_probe(self) -> ProbeResult | None:
        if not self._openvino_on():
            return None
        remembered = probe.load(self.probe_file(), model.PRECISIONS)
        if remembered is not None:
            return remembered
        self.ensure_onnx_export()
        notices.info(PROBING)
        # bf16 only where it is native: elsewhere OpenVINO ignores the hint and runs fp32 anyway.
        # int8-static is no candidate: it is only used when asked for (QABOT_PRECISION=int8-static).
        # It was the fastest here (Zen 4: 62.5 against bf16's 55.5 chunks/s on 192 Python-docs chunks,
        # 1.12x), but an index embedded in it lost a phantom-dev dev question from the top 5 (recall@5
        # 0.939 -> 0.909, MRR 0.680 -> 0.666), outside the 0.01 gate on retrieval.
        wanted = ["int8", "fp32"] + (["bf16"] if model.has_native_bf16(self.cpu_flags) else [])
        candidates = {p: engine for p in wanted if (engine := self.openvino(p)) is not None}
        if not candidates:
            return None
        result = probe.measure(self.tokenizer(), candidates, self.cpu_flags, self.int8_cosine,
                               int8_static_cosine=self.gate_cosines.get("int8-static"))
        try:
            probe.save(self.probe_file(), result)
        except OSError as exc:
            log.warning("cannot remember the engine probe (%s)", exc)
        log.info("engine probe: %s (chunks/s %s, load %.1f)", result.choice, result.chunks_per_s, result.load)
        return result

    # --- the model ------------------------------------------------------------------------------

    def tokenizer(self):
        return self._tokenizer.get()

    def max_seq_length(self) -> int:
        return self._max_seq_length.get()

    def sentence_transformer(self):
        """The stock SentenceTransformer (imports torch): the torch engine's weights."""
        return self._sentence_transformer.get()

    def torch_module(self):
        """The transformer with mean pooling, from the shared SentenceTransformer."""
        return self._torch_module.get()

    def prepare_torch(self):
        """The torch module, and (once) the ONNX export written, so that later processes start
        on ONNX Runtime."""
        return self._torch_prepared.get()

    def _prepare_torch(self):
        self.ensure_onnx_export()  # written from the weights, before torch loads: later runs skip torch
        return self.torch_module()

    def _announce(self) -> None:
        """Say once that the slow, once-per-machine preparation is starting."""
        if not self._announced:
            self._announced = True
            notices.info(PREPARING)

    # --- the files in the cache -----------------------------------------------------------------

    def onnx_model_file(self) -> Path:
        return self._onnx_file.get()

    def int8_model_file(self) -> Path:
        return export.int8_model_file(self.onnx_model_file())

    def int8_weights_file(self) -> Path:
        return export.int8_weights_file(self.onnx_model_file())

    def static_int8_file(self) -> Path:
        return export.static_int8_file(self.onnx_model_file())

    @property
    def int8_cosine(self) -> tuple[float, float] | None:
        """(mean, min) cosine to fp32 the int8 gate measured here; None where it did not run."""
        return self.gate_cosines.get("int8")

    def int8_weights(self) -> Path | None:
        """The OpenVINO IR with int8 weights (made now if it is not there, 0.5 s), or None."""
        return export.quantize_weights_int8(self.onnx_model_file(), self.int8_weights_file(), self._gate_for("int8"))

    def static_int8(self) -> Path | None:
        """The OpenVINO IR with int8 weights and calibrated int8 activations (made now if it is not
        there: ~1 s, on static_int8.CALIBRATION_TEXTS), or None."""
        target = self.static_int8_file()
        if self.onnx_model_file().exists() and not target.exists():
            self._announce()
        return export.quantize_static_int8(
            self.onnx_model_file(), target, self.tokenizer().encode_batch(static_int8.CALIBRATION_TEXTS),
            self._gate_for("int8-static"))

    def _gate_for(self, precision: str) -> Callable[[Path], bool]:
        """The check a newly made quantized model file must pass: compiled here and gated."""
        def agrees(tmp: Path) -> bool:
            candidate = self._compile_quantized(tmp, precision)
            if not self._int8_ingest_agrees(candidate):
                return False
            self._gated[precision] = candidate  # compiled and gated on this CPU just now: not done twice
            return True

        return agrees

    def _compile_quantized(self, path: Path, precision: str) -> OpenVinoEngine:
        return OpenVinoEngine(precision, compiled=engines.compile_openvino(
            path, precision, native_bf16=model.has_native_bf16(self.cpu_flags)))

    def _int8_ingest_agrees(self, candidate: OpenVinoEngine) -> bool:
        """The gate of a quantized ingest engine (int8, int8-static): mean and least cosine to fp32
        ONNX Runtime on probe.PASSAGES."""
        reference = self.fp32_reference()
        if reference is None:
            return False
        cos = engines.cosines(self.tokenizer(), reference, candidate, probe.PASSAGES)
        self.gate_cosines[candidate.precision] = (round(float(cos.mean()), 5), round(float(cos.min()), 5))
        if cos.mean() >= self.floors.int8_ingest_mean and cos.min() >= self.floors.int8_ingest_min:
            return True
        log.warning("%s ingest engine refused: cosine to fp32 mean %.4f, min %.4f (floors %.2f, %.2f)",
                    candidate.precision, cos.mean(), cos.min(), self.floors.int8_ingest_mean,
                    self.floors.int8_ingest_min)
        return False

    def onnx_export(self) -> Path | None:
        """The checked ONNX export, made now if it is not there yet (written from the weights and
        checked against the numpy reference; for a model that writer does not know, exported from
        torch and checked against it); None where that cannot be done."""
        target = self.onnx_model_file()
        if target.exists():
            return target
        with self._export_lock:
            if not target.exists():
                self._announce()
            # The weights are read once for both the graph and its numpy reference, and let go after.
            weights = _Lazy(lambda: bert_onnx.Bert.load(model.model_path()))
            return export.export_onnx(
                target, model.model_path(), self.torch_module, load_weights=weights.get,
                agrees_direct=lambda tmp: self._agree(NumpyEngine(bert=weights.get()),
                                                      OnnxEngine(session=engines.new_session(tmp)), self.floors.onnx),
                agrees_torch=lambda tmp: self._agree(TorchEngine(module=self.torch_module),
                                                     OnnxEngine(session=engines.new_session(tmp)), self.floors.onnx))

    def quantized(self) -> Path | None:
        """The checked int8 copy of the export, quantized now if it is not there yet (the first
        time sentences are ranked: ingest never needs it); None where that cannot be done."""
        source = self.onnx_model_file()
        if source.exists() and not self.int8_model_file().exists():
            self._announce()  # ~2 s, once per machine (quantize_onnx checks the hash of one that is there)
        return export.quantize_onnx(source, self.int8_model_file(), lambda tmp: self._agree(
            OnnxEngine(session=engines.new_session(source)), OnnxEngine("int8", session=engines.new_session(tmp)),
            self.floors.int8))

    def ensure_onnx_export(self) -> None:
        """Export once where ONNX is on; an fp32 session found missing before is looked for again
        on its next use. The int8 copy for ranking sentences is not made here but when sentences
        are first ranked (`onnx_int8`): an ingest never needs it (2.3 s of a first ingest, load 2.4)."""
        if not self.switches.onnx:
            return
        if not self.onnx_model_file().exists() and self.onnx_export() is not None:
            self._onnx.retry_if_none()

    def _agree(self, reference: Engine, candidate: Engine, floor: float) -> bool:
        return engines.agree_on_probes(self.tokenizer(), reference, candidate, floor)

    # --- the engines ----------------------------------------------------------------------------

    def onnx_fp32(self, batch_tokens: int = BATCH_TOKENS) -> OnnxEngine | None:
        """ONNX Runtime on the fp32 export (made now if it is not there: no torch needed), or None
        (switched off, unavailable, or the export failed)."""
        engine = self._onnx.get()
        return None if engine is None else engine.batched(batch_tokens)

    def fp32_reference(self) -> "engines.Remembered | None":
        """fp32 ONNX Runtime as the reference the OpenVINO candidates are checked against, each
        text set computed once (a first run checks three candidates on the same texts: 0.5 s
        of ONNX Runtime saved, load 2)."""
        if self._reference is None:
            engine = self.onnx_fp32()
            if engine is None:
                return None
            self._reference = engines.Remembered(engine)
        return self._reference

    def _load_onnx(self) -> OnnxEngine | None:
        path = self.onnx_export() if self.switches.onnx else None
        if path is None or not export.verified(path):
            return None
        try:
            return OnnxEngine(session=engines.new_session(path))
        except Exception as exc:  # corrupt cache file, missing onnxruntime, ...
            log.warning("cannot load %s (%s); using torch", path, exc)
            return None

    def onnx_int8(self, batch_tokens: int = SMALL_BATCH_TOKENS) -> OnnxEngine | None:
        """ONNX Runtime on the int8 copy (quantizing once if needed), for ranking sentences; None
        where it is switched off or cannot be made."""
        if not self._int8.made and not (self.switches.onnx and self.switches.int8 and self.onnx_fp32()):
            return None  # not remembered: the fp32 export this needs may appear later in the process
        engine = self._int8.get()
        return None if engine is None else engine.batched(batch_tokens)

    def _load_int8(self) -> OnnxEngine | None:
        if self.quantized() is None:
            return None
        try:
            return OnnxEngine("int8", session=engines.new_session(self.int8_model_file()))
        except Exception as exc:
            log.warning("cannot load %s (%s); ranking sentences in fp32", self.int8_model_file(), exc)
            return None

    def openvino(self, precision: str) -> OpenVinoEngine | None:
        """The model compiled by OpenVINO for `precision` ("bf16", "fp32", "int8" from the int8
        weights, or "int8-static" from the static int8 file), checked against fp32 ONNX Runtime
        (the quantized ones: the int8 ingest gate); None where OpenVINO is missing, switched off or
        disagrees."""
        return self._openvino[precision].get()

    def _compile_openvino(self, precision: str) -> OpenVinoEngine | None:
        if not self._openvino_on():
            return None
        self.ensure_onnx_export()  # OpenVINO reads the same checked ONNX file
        path, reference = self.onnx_model_file(), self.fp32_reference()
        if reference is None or not path.exists():
            return None
        if precision in model.QUANTIZED:
            made = self.int8_weights() if precision == "int8" else self.static_int8()
            if made is None:
                return None
            if precision in self._gated:
                # Made in this process: the gate compiled and checked it a moment ago (compiling
                # and checking again cost 1.4 s of a first run, load 2.4).
                return self._gated[precision]
            try:  # the gate again on this CPU: the file may have been made and checked elsewhere
                engine = self._compile_quantized(made, precision)
                return engine if self._int8_ingest_agrees(engine) else None
            except Exception as exc:
                log.warning("cannot use the %s ingest engine (%s)", precision, one_line(exc))
                return None
        try:
            engine = OpenVinoEngine(precision, compiled=engines.compile_openvino(path, precision))
            if not self._agree(reference, engine, self.floors.openvino):
                log.warning("OpenVINO %s disagrees with fp32 ONNX Runtime; embedding on torch", precision)
                return None
            return engine
        except Exception as exc:  # an optional speed-up: never let it break ingest
            log.warning("cannot use OpenVINO (%s); embedding on torch", exc)
            return None

    def planned_ingest_engine(self, precision: str) -> str:
        """The name of the engine `ingest` would give, without loading anything (for the index's
        record when nothing was embedded in this run)."""
        if precision in model.QUANTIZED or self._openvino_on():
            return f"OpenVINO {precision}"
        return "ONNX Runtime fp32" if precision == "fp32" and self.switches.onnx else f"torch {precision}"

    def torch(self, precision: str, batch_tokens: int = BATCH_TOKENS) -> TorchEngine:
        """The torch engine; nothing loads until it runs (then the model, and the ONNX export
        once: `prepare_torch`)."""
        return TorchEngine(precision, batch_tokens, module=self.prepare_torch)

    def ingest(self, precision: str, torch_batch_tokens: int = BATCH_TOKENS) -> Engine:
        """The engine for large inputs in an index's precision: OpenVINO, else ONNX Runtime for
        fp32, else torch. int8 and int8-static exist on OpenVINO only: without it, a one-line
        QabotError (an index is never embedded in two arithmetics)."""
        if precision in model.QUANTIZED:
            engine = self.openvino(precision)
            if engine is None:
                raise QabotError(f"this index is embedded in {precision}, which needs OpenVINO (missing, switched off "
                                 "by QABOT_OPENVINO=0, or refused by its fidelity check here); "
                                 "run `qabot ingest --rebuild` to re-embed it")
            return engine
        return (self.openvino(precision)
                or (self.onnx_fp32() if precision == "fp32" else None)
                or self.torch(precision, torch_batch_tokens))


def resolve_precision(requested: str = "auto", flags: frozenset[str] | None = None) -> str:
    """The precision an index gets: with `flags`, the guess from them (model.resolve_precision);
    else the process-wide registry's (auto: measured on this CPU)."""
    if flags is not None:
        return model.resolve_precision(requested, flags)
    return EngineRegistry.default().resolve_precision(requested)
