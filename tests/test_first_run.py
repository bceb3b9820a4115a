"""The first run on a machine (issue #16, items 11 and 19; issue #18, item 4): it says that it
prepares the embedding model while it does (the ONNX graph written from the weights, the int8
ingest weights; the int8 sentence model at the first answer: a few seconds, once, without torch)
and that it measures which ingest engine is fastest (once per CPU); the prepared files are shared
by every index; ONNX Runtime stores no telemetry id under ~/.cache/Microsoft (nor sends anything).
How long it takes is shown by `python -m benchmarks.firstrun`, not asserted here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import cache_dir
from bot.embed.registry import PREPARING, PROBING

REPO = Path(__file__).resolve().parent.parent


def qabot(*args: str, cwd: Path, timeout: float = 120, python_flags: tuple[str, ...] = (),
          **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "DISCORD_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO), **extra)
    return subprocess.run([sys.executable, *python_flags, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def imported(stderr: str) -> set[str]:
    """The top-level packages a run imported, from its `python -X importtime` lines."""
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


def test_onnx_runtime_leaves_no_telemetry_id_in_home(tmp_path, iss_index):
    home = tmp_path / "home"
    home.mkdir()
    result = qabot("ask", "--corpus", str(iss_index.corpus), "--index", str(iss_index.index), "when?",
                   cwd=tmp_path, HOME=str(home), XDG_CACHE_HOME="", QABOT_CACHE=str(cache_dir()))
    assert result.returncode == 0, result.stderr
    assert not (home / ".cache" / "Microsoft").exists(), sorted(str(p) for p in home.rglob("*"))


@pytest.mark.slow
def test_first_run_says_it_prepares_the_model_and_stores_nothing_of_microsoft(tmp_path, iss_index):
    home = tmp_path / "home"
    home.mkdir()
    fresh = dict(HOME=str(home), XDG_CACHE_HOME="", QABOT_CACHE="")
    first = qabot("ask", "--corpus", str(iss_index.corpus), "--index", str(iss_index.index), "when?",
                  cwd=tmp_path, timeout=600, **fresh)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines().count(PREPARING) == 1, first.stderr
    assert (home / ".cache" / "qabot" / "onnx").is_dir()
    assert not (home / ".cache" / "Microsoft").exists()
    again = qabot("ask", "--corpus", str(iss_index.corpus), "--index", str(iss_index.index), "when?",
                  cwd=tmp_path, **fresh)
    assert again.returncode == 0 and PREPARING not in again.stderr, again.stderr


@pytest.mark.slow
def test_prepared_model_and_probe_are_shared_by_every_index(tmp_path, iss_index):
    cache = tmp_path / "cache"
    first = qabot("ingest", "--corpus", str(iss_index.corpus), "--index", str(tmp_path / "a"), cwd=tmp_path,
                  timeout=600, QABOT_CACHE=str(cache))
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    assert lines.count(PREPARING) == 1 and lines.count(PROBING) == 1, first.stderr
    prepared = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    names = sorted(p.name for p in prepared)
    assert "model.onnx" in names and "model.onnx.sha256" in names  # every prepared file with its hash
    assert "model.int8.onnx" not in names  # the sentence model: made at the first answer, ingest never needs it
    second = qabot("ingest", "--corpus", str(iss_index.corpus), "--index", str(tmp_path / "b"), cwd=tmp_path,
                   QABOT_CACHE=str(cache))
    assert second.returncode == 0, second.stderr
    assert PREPARING not in second.stderr and PROBING not in second.stderr, second.stderr
    assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == prepared  # nothing new
    assert len(list((cache / "onnx").iterdir())) == 1


@pytest.mark.slow
def test_first_ingest_prepares_the_model_without_torch_and_the_first_answer_the_sentence_model(tmp_path, iss_index):
    """The ONNX graph is written from the packaged weights: neither torch nor sentence-transformers
    is imported by a first ingest on an empty cache; the first answer then makes the int8 sentence
    model, saying so once, and later runs say nothing."""
    cache = tmp_path / "cache"
    where = ["--corpus", str(iss_index.corpus), "--index", str(tmp_path / "index")]
    first = qabot("ingest", *where, cwd=tmp_path, timeout=600, python_flags=("-X", "importtime"),
                  QABOT_CACHE=str(cache))
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stderr.splitlines()
    assert lines.count(PREPARING) == 1 and lines.count(PROBING) == 1, first.stderr[-3000:]
    assert not imported(first.stderr) & {"torch", "sentence_transformers", "transformers"}
    assert not list(cache.rglob("model.int8.onnx"))
    asked = qabot("ask", *where, "when will Russia leave the ISS?", cwd=tmp_path, timeout=600, QABOT_CACHE=str(cache))
    assert asked.returncode == 0 and "2024" in asked.stdout, asked.stdout + asked.stderr
    assert asked.stderr.splitlines().count(PREPARING) == 1, asked.stderr
    assert len(list(cache.rglob("model.int8.onnx"))) == 1 and len(list(cache.rglob("model.int8.onnx.sha256"))) == 1
    again = qabot("ask", *where, "when will Russia leave the ISS?", cwd=tmp_path, QABOT_CACHE=str(cache))
    assert again.returncode == 0 and PREPARING not in again.stderr and PROBING not in again.stderr, again.stderr
