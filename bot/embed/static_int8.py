"""Static int8 for OpenVINO ingest (issue #18): int8 weights *and* int8 activations whose ranges are
fixed beforehand by one fp32 pass over a small, fixed set of calibration texts, instead of measured
on every batch (the "int8" engine's activations are quantized on the fly).

The graph is the export's, with the same int8 weights as the "int8" engine (export.int8_matmul_weights:
per-output-channel scales; the feed-forward down-projections stay in floating point) and a
FakeQuantize (per tensor, 256 levels, asymmetric) on the activation input of every int8 MatMul and
on both inputs of the attention scores, the points NNCF's post-training quantization chooses for a
transformer; OpenVINO's CPU plugin runs these as int8 x int8 kernels (VNNI where the CPU has them)
and everything else in bf16 where that is native (engines.compile_openvino).

What was measured before choosing this (192 Python-docs chunks benchmarks/embed.py embeds, held out
from calibration; 2 vCPUs Zen 4, avx512_vnni and avx512_bf16, 7 alternating repetitions): at load
0.9-1.9, 62.5 chunks/s against bf16's 55.5 (1.12x, per-repetition median), at load 1.8-2.7 (the
host shared with other work) 1.24x; cosine to fp32 mean 0.9974, min 0.9935 (the "int8" engine:
0.85x bf16, 0.9996 / 0.9988). On the probe's shorter passages it measured 1.2-1.3x bf16. Tried and
not used: NNCF itself (nncf.quantize, TRANSFORMER, MIXED): its SmoothQuant made the vectors worse
(min 0.972-0.976; without it 0.9935, the same as this), and it took 5-13 s plus 2 s to import, where
this takes ~1 s with OpenVINO alone; also quantizing the down-projections (mean 0.9933, min 0.978).
With oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, an emulation) it was 0.83x fp32: the probe
(probe.py) only chooses it where it measures it fastest, and its gate (the int8 ingest floors, on
probe.PASSAGES, which it is not calibrated on) must pass on that CPU first.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

STATIC_INT8_VERSION = "1"  # bump when the quantization points or the range rule change

# Texts the activation ranges are measured on: corpus-like (prose, reference entries, configuration,
# code, tables, release notes; 10 to 256 tokens), none of them a probe passage (those check the
# result). Changing them changes the file name (calibration_key), so a new model is made.
CALIBRATION_TEXTS = [
    "The supply ship docked with the orbiting laboratory on its second attempt, after the first "
    "approach was called off when a sensor reported the wrong distance. The crew unloaded food, "
    "water and spare parts over the next three days, then filled the empty vehicle with rubbish. "
    "Flight controllers said the station's orbit would be raised by the ship's engines next week, "
    "because atmospheric drag had lowered it by almost two kilometres since the spring.",
    "shutil.copytree(src, dst, symlinks=False, ignore=None, copy_function=copy2, "
    "ignore_dangling_symlinks=False, dirs_exist_ok=False) Recursively copy an entire directory tree "
    "rooted at src to a directory named dst and return the destination directory. If dirs_exist_ok "
    "is false (the default) and dst already exists, a FileExistsError is raised.",
    "relayhost = [mail.example.net]:587\nsmtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = "
    "hash:/etc/postfix/sasl_passwd\nsmtp_tls_security_level = encrypt\n# Run postmap on the password "
    "file after every change, then reload the mail system so that it reads the new table.",
    "class Cache:\n    def __init__(self, size=256):\n        self._data = {}\n        self._size = size\n\n"
    "    def get(self, key, default=None):\n        try:\n            return self._data[key]\n"
    "        except KeyError:\n            return default\n\n    def put(self, key, value):\n"
    "        if len(self._data) >= self._size:\n            self._data.pop(next(iter(self._data)))\n"
    "        self._data[key] = value",
    "| Signal | Number | Default action |\n|---|---|---|\n| SIGHUP | 1 | terminate |\n| SIGINT | 2 | "
    "terminate |\n| SIGKILL | 9 | terminate (cannot be caught) |\n| SIGSEGV | 11 | core dump |\n| SIGTERM "
    "| 15 | terminate |\n| SIGCHLD | 17 | ignore |",
    "New in version 3.10: structural pattern matching with the match and case statements. Changed in "
    "version 3.9: dict union operators | and |= were added. Removed in version 3.12: the imp module; "
    "use importlib instead.",
    "What is the default port for the mail submission agent?",
    "Each porter carried about twenty kilograms, and the expedition paid them by the day rather than "
    "by the load. In the wet season the trail between the two villages took four days instead of two, "
    "and the bridges were often washed away, so the surveyors waited on the bank until the river fell.",
    "Raises ValueError if the string cannot be parsed, and TypeError if the argument is neither a "
    "string nor a bytes-like object. See also: int(), float(), decimal.Decimal.",
    "$ tar -czf backup.tar.gz --exclude='*.tmp' ~/projects\n$ tar -tzf backup.tar.gz | head\n"
    "$ tar -xzf backup.tar.gz -C /restore --strip-components=1",
    "An iterator is an object that returns its items one at a time; a generator is a function that "
    "builds one. " * 10,
    "http://www.example.org/docs/v2/reference/index.html#section-4.2.1 (retrieved 2023-11-07; "
    "ISBN 978-0-596-52068-7; DOI 10.1000/182; SHA-256 9f86d081884c7d659a2feaa0c55ad015)",
]


def calibration_key(texts: Sequence[str] = tuple(CALIBRATION_TEXTS)) -> str:
    """Part of the file name: the version and the texts the ranges were measured on."""
    return hashlib.sha256("\x00".join([STATIC_INT8_VERSION, *texts]).encode()).hexdigest()[:8]


_PASS_THROUGH = ("Reshape", "Transpose")  # between an activation and the MatMul that reads it


def activation_points(model) -> list:
    """The inputs (openvino Input objects) that get a FakeQuantize: the activation input of every
    MatMul whose weights are int8 (a Convert-Multiply decompression of an int8 constant) and both
    inputs of the attention-score MatMul, each taken above the Reshape/Transpose it passes through
    (where NNCF places it). Softmax x V and the floating-point down-projections are left alone."""
    points = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        weights = op.input_value(1).get_node()
        if weights.get_type_name() == "Multiply" and weights.input_value(0).get_node().get_type_name() == "Convert":
            inputs = [0]
        elif weights.get_type_name() == "Constant" or op.input_value(0).get_node().get_type_name() == "Softmax":
            continue
        else:
            inputs = [0, 1]  # queries x keys
        for i in inputs:
            point = op.input(i)
            while point.get_source_output().get_node().get_type_name() in _PASS_THROUGH:
                point = point.get_source_output().get_node().input(0)
            points.append(point)
    return points


def measure_ranges(model, sources: list, encodings: Sequence) -> list[tuple[float, float]]:
    """(least, greatest) value of each of `sources` (outputs of `model`'s nodes) over the texts,
    one text a run (no padding to count), in fp32."""
    import openvino
    from openvino import opset13 as ops

    watched = openvino.Model([*model.get_results(), *[ops.result(s) for s in sources]], model.get_parameters())
    compiled = openvino.Core().compile_model(watched, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    low, high = np.full(len(sources), np.inf), np.full(len(sources), -np.inf)
    first = len(model.outputs)
    for e in encodings:
        ids = np.asarray([e.ids], dtype=np.int64)
        out = request.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        for j in range(len(sources)):
            values = out[compiled.outputs[first + j]]
            low[j], high[j] = min(low[j], float(values.min())), max(high[j], float(values.max()))
    return list(zip(low.tolist(), high.tolist()))


def quantize_activations(model, encodings: Sequence) -> int:
    """Put a FakeQuantize with measured ranges on each activation point of `model` (an openvino.Model
    whose weights export.int8_matmul_weights has made int8); the number placed."""
    from openvino import opset13 as ops

    points = activation_points(model)
    if not points:
        raise ValueError("no int8 MatMul to quantize the activations of")
    sources: list = []
    for point in points:
        if not any(point.get_source_output() == s for s in sources):
            sources.append(point.get_source_output())
    ranges = measure_ranges(model, sources, encodings)
    for point in points:
        low, high = ranges[next(j for j, s in enumerate(sources) if s == point.get_source_output())]
        low, high = min(low, 0.0), max(high, 0.0)  # zero stays exact (padding, ReLU-like tails)
        if not (np.isfinite(low) and np.isfinite(high)) or high - low <= 0:
            raise ValueError(f"no usable range at {point.get_node().get_friendly_name()}")
        bounds = [ops.constant(np.array(v, dtype=np.float32)) for v in (low, high, low, high)]
        point.replace_source_output(ops.fake_quantize(point.get_source_output(), *bounds, 256).output(0))
    model.validate_nodes_and_infer_types()
    return len(points)
