"""The embedding model's ONNX graph written straight from its safetensors weights, and a numpy
reference of the same computation to check it against: the first run needs neither torch nor
sentence-transformers.

Why: exporting through torch cost ~10 s of a first run (2 vCPUs, load 2.4: import torch 2.1 s,
loading the SentenceTransformer 5.9 s, torch.onnx.export 1.6 s, checking against torch 0.8 s),
for a graph that is the textbook BERT encoder. Written here with the onnx helper API it takes
well under a second, and its output is the model's whole computation as sentence-transformers
describes it in modules.json: Transformer (BertModel, token type 0) → mean pooling over real
tokens → L2 normalisation.

The graph keeps what the rest of qabot relies on: inputs `input_ids` and `attention_mask`
(int64, batch × tokens, both dynamic), output `embedding` (float32 batch × 384, unit rows), and
every Linear as a MatMul on a constant (in, out) weight followed by the bias Add, as torch's
exporter wrote it: the int8 copies (export.quantize_onnx, export.int8_matmul_weights) find the
same MatMuls to quantize.

`supported(model_dir)` says whether the packaged model is one this writer knows (a BertModel with
absolute positions, GELU, mean pooling, normalisation); anything else goes through torch's
exporter as before (export.export_onnx).

`NumpyEngine` computes the same thing with numpy, one text at a time and unpadded (so it shares
neither the graph's batching nor its mask arithmetic): the reference the written graph must match
(cosine >= 0.9999) before it is used, like torch was for the old export. It is 20 lines of
textbook BERT; tests/test_embed.py checks both against stock sentence-transformers.
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.embed.batching import BatchFn, normalise

OPSET = 17  # LayerNormalization is a single op from 17 on; what the torch export used
MASKED = -10000.0  # added to the scores of padding: exp() underflows to 0 in fp32 and in bf16 alike


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def supported(model_dir: str | Path) -> str | None:
    """None when the model at `model_dir` is one this writer builds exactly; else why not."""
    model_dir = Path(model_dir)
    try:
        config = _read_json(model_dir / "config.json")
        modules = [m.get("type", "") for m in _read_json(model_dir / "modules.json")]
        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
    except (OSError, ValueError) as exc:
        return f"cannot read the model's configuration ({exc})"
    if config.get("model_type") != "bert" or config.get("architectures", ["BertModel"]) != ["BertModel"]:
        return f"model type {config.get('model_type')!r} {config.get('architectures')}"
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        return f"activation {config.get('hidden_act')!r}, positions {config.get('position_embedding_type')!r}"
    if [m.rsplit(".", 1)[-1] for m in modules] != ["Transformer", "Pooling", "Normalize"]:
        return f"modules {modules}"
    if not pooling.get("pooling_mode_mean_tokens") or any(
            v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"):
        return f"pooling {pooling}"
    if not (model_dir / "model.safetensors").exists():
        return "no model.safetensors"
    return None


@dataclass(frozen=True)
class Bert:
    """The packaged model's weights (numpy, float32) and the shape numbers the graph needs."""

    weights: dict[str, np.ndarray]
    layers: int
    heads: int
    hidden: int
    eps: float

    @classmethod
    def load(cls, model_dir: str | Path) -> "Bert":
        from safetensors.numpy import load_file

        model_dir = Path(model_dir)
        config = _read_json(model_dir / "config.json")
        weights = {k.removeprefix("bert."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        return cls(weights=weights, layers=int(config["num_hidden_layers"]), heads=int(config["num_attention_heads"]),
                   hidden=int(config["hidden_size"]), eps=float(config.get("layer_norm_eps", 1e-12)))

    def w(self, name: str) -> np.ndarray:
        return np.ascontiguousarray(self.weights[name], dtype=np.float32)


def write_onnx(bert: "Bert | str | Path", target: Path) -> None:
    """The model (its loaded weights, or the folder they are in) as an ONNX graph at `target`
    (see the module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    bert = bert if isinstance(bert, Bert) else Bert.load(bert)
    nodes: list = []
    inits: list = []
    head = bert.hidden // bert.heads

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    def linear(x: str, prefix: str) -> str:
        # torch.nn.Linear stores (out, in); the graph multiplies by the (in, out) transpose, as
        # torch's exporter wrote it (what the int8 passes look for).
        w = const(f"{prefix}.weight", bert.w(f"{prefix}.weight").T.copy())
        b = const(f"{prefix}.bias", bert.w(f"{prefix}.bias"))
        return op("Add", [op("MatMul", [x, w], f"{prefix}/MatMul"), b], f"{prefix}/Add")

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, const(f"{prefix}.weight", bert.w(f"{prefix}.weight")),
                                         const(f"{prefix}.bias", bert.w(f"{prefix}.bias"))],
                  f"{prefix}/LayerNorm", axis=-1, epsilon=bert.eps)

    # Embeddings: word + token type (sentence-transformers passes none: all zeros) + position.
    one = const("one_i64", np.array([1], dtype=np.int64))
    tokens = op("Gather", [op("Shape", ["input_ids"], "shape"), const("axis1", np.array(1, dtype=np.int64))], "tokens")
    positions = op("Range", [const("zero_i64", np.array(0, dtype=np.int64)), tokens,
                             const("step_i64", np.array(1, dtype=np.int64))], "positions")
    words = op("Gather", [const("embeddings.word_embeddings.weight", bert.w("embeddings.word_embeddings.weight")),
                          "input_ids"], "embeddings/words")
    # Token types as a Gather of zeros, not the constant row 0 it amounts to: the int8 copy
    # (quantize_dynamic) quantizes Gather tables, and the answerer's int8 vectors must stay those of
    # the torch export's int8 copy (with the row added as a constant, min cosine to them was 0.979).
    zeros = op("ConstantOfShape", [op("Shape", ["input_ids"], "shape_ids")], "token_type_ids",
               value=numpy_helper.from_array(np.array([0], dtype=np.int64)))
    typed = op("Add", [words, op("Gather", [const("embeddings.token_type_embeddings.weight",
                                                  bert.w("embeddings.token_type_embeddings.weight")), zeros],
                                 "embeddings/token_types")], "embeddings/typed")
    placed = op("Add", [typed, op("Gather", [const("embeddings.position_embeddings.weight",
                                                   bert.w("embeddings.position_embeddings.weight")), positions],
                                  "embeddings/positions")], "embeddings/sum")
    x = layer_norm(placed, "embeddings.LayerNorm")

    # The padding mask as an additive bias on the attention scores: 0 for tokens, MASKED for pads.
    maskf = op("Cast", ["attention_mask"], "mask_f32", to=TensorProto.FLOAT)
    bias = op("Mul", [op("Sub", [maskf, const("one_f32", np.array(1.0, dtype=np.float32))], "mask_minus_1"),
                      const("masked", np.array(-MASKED, dtype=np.float32))], "mask_bias_2d")
    bias = op("Unsqueeze", [bias, const("axes_1_2", np.array([1, 2], dtype=np.int64))], "mask_bias")
    split_heads = const("split_heads", np.array([0, 0, bert.heads, head], dtype=np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, bert.hidden], dtype=np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(head), dtype=np.float32))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    one_f = const("one_f", np.array(1.0, dtype=np.float32))

    for i in range(bert.layers):
        p = f"encoder.layer.{i}"

        def heads_of(t: str, perm: list[int], name: str) -> str:
            return op("Transpose", [op("Reshape", [t, split_heads], f"{name}/split")], f"{name}/heads", perm=perm)

        q = heads_of(linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3], f"{p}/q")
        k = heads_of(linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1], f"{p}/k")
        v = heads_of(linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3], f"{p}/v")
        scores = op("Add", [op("Mul", [op("MatMul", [q, k], f"{p}/qk"), scale], f"{p}/scaled"), bias], f"{p}/masked")
        context = op("MatMul", [op("Softmax", [scores], f"{p}/softmax", axis=-1), v], f"{p}/context")
        context = op("Reshape", [op("Transpose", [context], f"{p}/context/t", perm=[0, 2, 1, 3]), merge_heads],
                     f"{p}/context/merged")
        attended = op("Add", [linear(context, f"{p}.attention.output.dense"), x], f"{p}/attention/residual")
        x = layer_norm(attended, f"{p}.attention.output.LayerNorm")
        up = linear(x, f"{p}.intermediate.dense")
        # GELU, exact (erf), in the order torch's exporter wrote it: x * (1 + erf(x / sqrt 2)) * 0.5
        gelu = op("Mul", [op("Mul", [up, op("Add", [op("Erf", [op("Div", [up, sqrt2], f"{p}/gelu/div")], f"{p}/gelu/erf"),
                                                    one_f], f"{p}/gelu/add")], f"{p}/gelu/mul"), half], f"{p}/gelu")
        x = layer_norm(op("Add", [linear(gelu, f"{p}.output.dense"), x], f"{p}/output/residual"), f"{p}.output.LayerNorm")

    # Mean over real tokens, then unit length (Pooling(mean), Normalize).
    mask3 = op("Unsqueeze", [maskf, const("axes_2", np.array([2], dtype=np.int64))], "mask_3d")
    total = op("ReduceSum", [op("Mul", [x, mask3], "pool/masked"), one], "pool/sum", keepdims=0)
    count = op("Clip", [op("ReduceSum", [mask3, one], "pool/count", keepdims=0),
                        const("min_count", np.array(1e-9, dtype=np.float32))], "pool/count_clipped")
    pooled = op("Div", [total, count], "pool/mean")
    norm = op("Clip", [op("ReduceL2", [pooled], "norm/l2", axes=[-1], keepdims=1),
                       const("min_norm", np.array(1e-12, dtype=np.float32))], "norm/clipped")
    nodes.append(helper.make_node("Div", [pooled, norm], ["embedding"], name="norm/div"))

    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2 mean-pooled, normalised",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", bert.hidden])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qabot")
    model.ir_version = 8  # what onnxruntime and OpenVINO of this project's range all read
    # No onnx.checker pass (0.26 s, one more copy of 90 MB): loading the file in ONNX Runtime and
    # matching the numpy reference, which every export must before it is used, checks more.
    with open(target, "wb") as f:
        f.write(model.SerializeToString())


# --- the numpy reference ---------------------------------------------------------------------

def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 (Abramowitz & Stegun 7.1.26): numpy has none, and math.erf per element is
    slow; the error is far below what a 0.9999 cosine can see."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return sign * y


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def reference_vector(bert: Bert, ids: Sequence[int]) -> np.ndarray:
    """One text's embedding without padding or a mask (textbook BERT), in float32 like the graph:
    float64 took 1.0 s for the probe texts instead of 0.45 s (the 256-token one is most of it),
    and both land within 1e-6 of each other, far inside the 0.9999 the check asks."""
    W = bert.weights
    n, d = len(ids), bert.hidden // bert.heads
    x = W["embeddings.word_embeddings.weight"][list(ids)] + W["embeddings.token_type_embeddings.weight"][0] \
        + W["embeddings.position_embeddings.weight"][:n]
    x = _layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], bert.eps)

    def lin(t, name):
        return t @ W[f"{name}.weight"].T + W[f"{name}.bias"]

    for i in range(bert.layers):
        p = f"encoder.layer.{i}"
        # Contiguous heads: numpy multiplies strided stacks with its own loop, not BLAS (1.4 s of
        # the check instead of 0.1 s).
        q, k, v = (np.ascontiguousarray(lin(x, f"{p}.attention.self.{m}").reshape(n, bert.heads, d).transpose(1, 0, 2))
                   for m in ("query", "key", "value"))
        s = q @ np.ascontiguousarray(k.transpose(0, 2, 1)) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        c = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, bert.hidden)
        x = _layer_norm(lin(c, f"{p}.attention.output.dense") + x, W[f"{p}.attention.output.LayerNorm.weight"],
                        W[f"{p}.attention.output.LayerNorm.bias"], bert.eps)
        u = lin(x, f"{p}.intermediate.dense")
        u = u * 0.5 * (1.0 + _erf(u / math.sqrt(2.0)))
        x = _layer_norm(lin(u, f"{p}.output.dense") + x, W[f"{p}.output.LayerNorm.weight"],
                        W[f"{p}.output.LayerNorm.bias"], bert.eps)
    pooled = x.mean(0)
    return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread: its threads spin-wait on each other, and on a busy machine
    that made the reference 5-25x slower (probe texts, 2 vCPUs, load 1.6: 1.2-5.2 s on two threads,
    0.19-0.25 s on one). threadpoolctl comes with sentence-transformers' scikit-learn; without it,
    as it is."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class NumpyEngine:
    """The reference as an Engine (engines.Engine): each text on its own, unpadded. Slow (a few
    texts a second at full length); only for checking."""

    name: str = "numpy reference fp32"
    bert: Any = field(kw_only=True)

    def run(self, encodings: Sequence, on_batch: BatchFn | None = None) -> np.ndarray:
        with _one_blas_thread():
            out = np.stack([reference_vector(self.bert, e.ids) for e in encodings])
        if on_batch is not None:
            on_batch(len(encodings))
        return normalise(out)
