"""The first run on a machine (issue #16, item 19): ONNX Runtime stores no telemetry id under
~/.cache/Microsoft (nor sends anything)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.config import cache_dir

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
