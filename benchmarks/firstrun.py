"""The first run on a machine: `qabot ingest` of the shipped ISS article with an empty cache
directory (a new one each run, so the model is prepared and the engine probe runs every time),
end to end, the same command again on the prepared cache, a first `qabot ask` of that index on
another empty cache, and where the time goes inside one such run (the phases of the preparation,
timed in a fresh process).

    python -m benchmarks.firstrun [--runs 3] [--against DIR]

`--against DIR` also times another checkout's code (e.g. `git worktree add --detach DIR <commit>`)
with this same Python and packages, alternating with this one run by run: the before/after ratio
from one session, under the same load.

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

from benchmarks.common import BENCH_DIR, REPO, machine, median, run_child, table

SEED = REPO / "corpus"
QUESTION = "when will Russia leave the ISS?"

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
    parser.add_argument("--against", type=Path, help="another checkout of qabot to time the same way, alternating")
    args = parser.parse_args(argv)
    work = BENCH_DIR / "firstrun"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}

    codes = {"this code": REPO, **({f"{args.against}": args.against.resolve()} if args.against else {})}
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for i in range(args.runs):
        for name in codes if i % 2 == 0 else reversed(list(codes)):
            runs[name].append(first_ingest(codes[name], work, f"{i}-{len(runs[name])}-{abs(hash(name))}", env))

    print(f"First `qabot ingest` of corpus/ on an empty cache, {args.runs} runs each ({machine()})")
    print(table(["code", "run", "first ingest s", "load at start", "same on the prepared cache s", "first ask s"],
                [[name, i + 1, r["seconds"], r["load"], r["again"], r["ask"]] for name, rs in runs.items()
                 for i, r in enumerate(rs)]))
    for name, rs in runs.items():
        print(f"stderr said ({name}): " + " | ".join(rs[0]["notices"]))
    first = median([r["seconds"] for r in runs["this code"]])
    summary = (f"\nfirstrun: median {first:.1f} s (goal <= 10 s) [{'PASS' if first <= 10 else 'MISS'}], "
               f"prepared cache {median([r['again'] for r in runs['this code']]):.1f} s, "
               f"first ask {median([r['ask'] for r in runs['this code']]):.1f} s")
    if args.against:
        other = median([r["seconds"] for r in runs[str(args.against)]])
        summary += (f"; {args.against}: {other:.1f} s ({other / first:.2f}x this code's time), first ask "
                    f"{median([r['ask'] for r in runs[str(args.against)]]):.1f} s")
    print(summary)

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


def first_ingest(code: Path, work: Path, tag: str, env: dict) -> dict:
    """`qabot ingest` of corpus/ from the checkout `code` on a new, empty cache directory, then
    the same again on that now-prepared cache."""
    cache = fresh(work)
    env = {**env, "QABOT_CACHE": str(cache), "PYTHONPATH": str(code)}
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "bot", "ingest", "--corpus", str(SEED)]
    res = run_child(cmd + ["--index", str(work / f"index-{tag}")], env=env, cwd=code)
    if res["rc"] != 0:
        raise SystemExit(f"first ingest ({code}) failed:\n{res['stderr'][-3000:]}")
    notices = [line for line in res["stderr"].splitlines() if line.startswith(("Preparing", "Measuring"))]
    again = run_child(cmd + ["--index", str(work / f"again-{tag}")], env=env, cwd=code)
    # A first `qabot ask` on another empty cache, of the index just built: what a user who was
    # handed an index (or whose cache was cleared) waits for.
    ask_env = {**env, "QABOT_CACHE": str(fresh(work))}
    ask = run_child([sys.executable, "-m", "bot", "ask", QUESTION, "--corpus", str(SEED), "--index",
                     str(work / f"index-{tag}")], env=ask_env, cwd=code)
    if ask["rc"] != 0:
        raise SystemExit(f"first ask ({code}) failed:\n{ask['stderr'][-3000:]}")
    return {"seconds": res["seconds"], "load": load, "notices": notices, "again": again["seconds"],
            "ask": ask["seconds"]}


if __name__ == "__main__":
    main()
