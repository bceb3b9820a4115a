"""Step 3a, embed: text → L2-normalised vectors with the packaged all-MiniLM-L6-v2.

* model.py: the model (name, width, precisions, CPU flags, where it is, its tokenizer);
* batching.py: token-length batching shared by the engines;
* engines.py: OpenVINO (ingest), ONNX Runtime fp32/int8 (questions, sentences) and torch
  (reference and fallback) behind one `Engine` interface;
* export.py: the ONNX export and its int8 copies, cached on disk, hash-checked;
* static_int8.py: static int8 (calibrated activation ranges) for OpenVINO ingest;
* probe.py: which ingest engine (int8-static, int8, bf16, fp32) is fastest on this CPU, measured once;
* registry.py: `EngineRegistry`, which owns everything loaded (one per process by default);
* embedder.py: `Embedder`, the LangChain `Embeddings` the rest of qabot uses.
"""
from bot.embed.model import quiet_runtimes

quiet_runtimes()  # before anything can import onnxruntime: no telemetry, no id under ~/.cache/Microsoft

from bot.embed.embedder import Embedder  # noqa: E402
from bot.embed.engines import Engine  # noqa: E402
from bot.embed.model import DIM, MODEL_NAME, PRECISIONS, cpu_flags, model_path  # noqa: E402
from bot.embed.registry import EngineRegistry, EngineSwitches, FidelityFloors, resolve_precision  # noqa: E402

__all__ = ["DIM", "MODEL_NAME", "PRECISIONS", "Embedder", "Engine", "EngineRegistry", "EngineSwitches",
           "FidelityFloors", "cpu_flags", "model_path", "resolve_precision"]
