"""All settings in one place: defaults, then environment variables, then command-line flags."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

# Chunking defaults, measured on the gold sets (README "Answer quality"): on the Python-docs set
# 1000/150 beat 500/80, 800/120 and 1200/180 on recall@5, MRR and answer accuracy, and on the ISS
# set it beat 800/120. About the embedding model's 256-token window for prose.
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_CHUNK_OVERLAP = 150

# Environment variable for each setting that can come from the environment.
ENV_NAMES = {
    "corpus": "QABOT_CORPUS",
    "index": "QABOT_INDEX",
    "chroma_url": "QABOT_CHROMA_URL",
    "chroma_token": "QABOT_CHROMA_TOKEN",
    "collection": "QABOT_COLLECTION",
    "chunk_size": "QABOT_CHUNK_SIZE",
    "chunk_overlap": "QABOT_CHUNK_OVERLAP",
    "precision": "QABOT_PRECISION",
    "k": "QABOT_K",
    "llm": "QABOT_LLM",
    "llm_timeout": "QABOT_LLM_TIMEOUT",
}


@dataclass(frozen=True)
class Settings:
    corpus: Path = Path("corpus")
    index: Path = Path("index")
    chroma_url: str | None = None  # None: embedded Chroma under `index`; else a Chroma server
    chroma_token: str | None = field(default=None, repr=False)  # sent as "Authorization: Bearer …"
    collection: str = "qabot"
    # None: what the index was built with (so `ask` never re-chunks an index), else the default.
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    precision: str = "auto"  # embedding precision: auto (bf16 where the CPU has it), bf16, fp32
    k: int = 5  # passages handed to the answerer
    llm: str | None = None  # PROVIDER:MODEL of an optional chat model
    llm_timeout: float = 60.0  # seconds before an LLM answer is abandoned for the extractive one

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults < environment < explicit overrides (flags); None overrides are ignored."""
        values: dict = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, env in ENV_NAMES.items():
            raw = os.environ.get(env)
            if raw:
                values[name] = _convert(types[name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus", "index"):
            if name in values:
                values[name] = Path(values[name])
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


def _convert(type_name: str, raw: str):
    if type_name.startswith("int"):
        return int(raw)
    if type_name == "float":
        return float(raw)
    return raw
