"""The first run on a machine (issue #16, items 11 and 19; issue #18, item 4): it says that it
prepares the embedding model while it does (the ONNX export and its int8 copies, ~25 s, once) and
that it measures which ingest engine is fastest (once per CPU); the prepared files are shared by
every index; ONNX Runtime stores no telemetry id under ~/.cache/Microsoft (nor sends anything)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import cache_dir
from bot.embed.registry import PREPARING, PROBING

REPO = Path(__file__).resolve().parent.parent


def qabot(*args: str, cwd: Path, timeout: float = 120, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "DISCORD_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO), **extra)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


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
    second = qabot("ingest", "--corpus", str(iss_index.corpus), "--index", str(tmp_path / "b"), cwd=tmp_path,
                   QABOT_CACHE=str(cache))
    assert second.returncode == 0, second.stderr
    assert PREPARING not in second.stderr and PROBING not in second.stderr, second.stderr
    assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == prepared  # nothing new
    assert len(list((cache / "onnx").iterdir())) == 1
