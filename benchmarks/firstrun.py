"""The first run on a machine: `qabot ingest` of the shipped ISS article with an empty cache
directory (a new one each run, so the model is prepared and the engine probe runs every time),
end to end, and where the time goes inside one such run (the phases of the preparation, timed in
a fresh process).

    python -m benchmarks.firstrun [--runs 3]

Nothing here touches ~/.cache/qabot: every run gets its own QABOT_CACHE under $QABOT_BENCH_DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BENCH_DIR, REPO, machine, median, qabot_cmd, run_child, table

SEED = REPO / "corpus"

# The preparation a first `qabot ingest` does, step by step, in a fresh process on an empty cache
# (the same registry calls the CLI makes, in the order it makes them).
PHASES = r"""
import json, os, sys, time
from pathlib import Path
t = time.perf_counter()
phases = {}
def step(name):
    global t
    now = time.perf_counter()
    phases[name] = round(now - t, 2)
    t = now
from bot.embed import EngineRegistry
from bot.embed import export
registry = EngineRegistry(cache_dir=Path(sys.argv[1]))
registry.tokenizer()
step("import bot.embed, tokenizer")
registry.onnx_export()
step("fp32 ONNX export, checked")
registry.quantized()
step("int8 ONNX copy (sentences), checked")
registry.onnx_fp32()
step("fp32 ONNX Runtime session")
registry.int8_weights()
step("int8 OpenVINO weights, gated")
result = registry.probe()
step("engine probe (compile + measure)")
phases["probe choice"] = result.choice if result else None
phases["torch imported"] = "torch" in sys.modules
print(json.dumps(phases))
"""


def fresh(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="cache-", dir=parent))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.firstrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-phases", action="store_true", help="only the end-to-end runs")
    args = parser.parse_args(argv)
    work = BENCH_DIR / "firstrun"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}

    runs = []
    for i in range(args.runs):
        cache, index = fresh(work), work / f"index-{i}"
        load = os.getloadavg()[0]
        res = run_child(qabot_cmd() + ["ingest", "--corpus", str(SEED), "--index", str(index)],
                        env={**env, "QABOT_CACHE": str(cache)})
        if res["rc"] != 0:
            raise SystemExit(f"first ingest failed:\n{res['stderr'][-3000:]}")
        notices = [line for line in res["stderr"].splitlines() if line.startswith(("Preparing", "Measuring"))]
        runs.append({"seconds": res["seconds"], "load": load, "notices": notices})
        # the same command again on the now-prepared cache: what every later run costs
        again = run_child(qabot_cmd() + ["ingest", "--corpus", str(SEED), "--index", str(work / f"again-{i}")],
                          env={**env, "QABOT_CACHE": str(cache)})
        runs[-1]["again"] = again["seconds"]

    print(f"First `qabot ingest` of corpus/ on an empty cache, {args.runs} runs ({machine()})")
    print(table(["run", "first s", "load at start", "same on the prepared cache s"],
                [[i + 1, r["seconds"], r["load"], r["again"]] for i, r in enumerate(runs)]))
    print("stderr said: " + " | ".join(runs[0]["notices"]))
    first = median([r["seconds"] for r in runs])
    print(f"\nfirstrun: median {first:.1f} s (goal <= 10 s) [{'PASS' if first <= 10 else 'MISS'}], "
          f"prepared cache {median([r['again'] for r in runs]):.1f} s")

    phases = None
    if not args.no_phases:
        got = run_child([sys.executable, "-c", PHASES, str(fresh(work))], env=env)
        if got["rc"] != 0:
            print(f"\nphases: failed: {got['stderr'][-1500:]}")
        else:
            phases = json.loads(got["stdout"].strip().splitlines()[-1])
            print(f"\nPhases of the preparation, one fresh process (load {os.getloadavg()[0]:.1f}):")
            print(table(["phase", "s"], [[k, v if isinstance(v, float) else str(v)] for k, v in phases.items()]))
    shutil.rmtree(work, ignore_errors=True)
    return {"first_s": first, "runs": runs, "phases": phases}


if __name__ == "__main__":
    main()
