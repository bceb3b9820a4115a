"""Cold start of `qabot ask` to its first answer (a new process each time), its peak RSS, and
where the time goes: the import chain (`python -X importtime`) and the in-process phases.

    python -m benchmarks.coldstart [--runs 5] [--corpus DIR --index DIR]

Also measured with QABOT_ONNX=0 (questions embedded by torch), to show what the ONNX query path
saves. The goal (issue #18): the first answer within 2 s, with chromadb never imported when the
index's BM25 cache is current (bot/qa/retrieve.py).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from benchmarks.common import add_corpus_argument, ensure_index, machine, median, qabot_cmd, run_child, run_child_rss, table

QUESTION = "what does Path.mkdir raise if the folder already exists"
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(.+)")

# The phases of a cold `qabot ask`, timed inside one fresh process.
PHASES = r"""
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from bot.config import Settings
from bot.qa.pipeline import QA
t1 = time.perf_counter()
qa = QA(Settings(corpus=Path(sys.argv[1]), index=Path(sys.argv[2])))
t2 = time.perf_counter()
qa.embedder.warm_up()
t3 = time.perf_counter()
qa.answer(sys.argv[3])
t4 = time.perf_counter()
import json
print(json.dumps({"import bot.answer": t1 - t0, "QA(settings)": t2 - t1, "embedder warm-up": t3 - t2,
                  "first answer()": t4 - t3,
                  "torch imported": "torch" in sys.modules, "chromadb imported": "chromadb" in sys.modules}))
"""


def importtime(cmd: list[str], env: dict | None = None) -> list[tuple[float, float, str]]:
    """Top-level imports of a run (cumulative s, self s, module), biggest first."""
    res = run_child([cmd[0], "-X", "importtime", *cmd[1:]], env=env)
    top = []
    for line in res["stderr"].splitlines():
        m = IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space: imported by the program itself, not nested
            top.append((int(m.group(2)) / 1e6, int(m.group(1)) / 1e6, m.group(4).strip()))
    return sorted(top, reverse=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coldstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    add_corpus_argument(parser)
    parser.add_argument("--index", type=Path, default=None,
                        help="an index already built from --corpus (default: the benchmark's own, built or brought "
                             "up to date first)")
    args = parser.parse_args(argv)
    index = args.index or ensure_index(args.corpus)
    cmd = qabot_cmd() + ["ask", QUESTION, "--corpus", str(args.corpus), "--index", str(index), "--json"]

    variants = {"qabot ask (default)": {}, "qabot ask, QABOT_ONNX=0 (torch)": {"QABOT_ONNX": "0"}}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for i in range(args.runs):
        for name in variants if i % 2 == 0 else list(reversed(variants)):
            res = run_child_rss(cmd, env=variants[name])
            if res["rc"] != 0:
                raise SystemExit(f"`{' '.join(cmd)}` failed:\n{res['stderr'][-3000:]}")
            runs[name].append(res)
    print(f"Cold start of `qabot ask` to the first answer, {args.runs} runs each, alternating "
          f"(Python-docs index; {machine()})")
    print(table(["command", "p50 s", "min s", "max s", "peak RSS MB"], [
        [name, median([r["seconds"] for r in rs]), min(r["seconds"] for r in rs), max(r["seconds"] for r in rs),
         median([r["rss_mb"] for r in rs])] for name, rs in runs.items()
    ]))

    import json
    import sys

    for name, env in variants.items():
        phases = run_child([sys.executable, "-c", PHASES, str(args.corpus), str(index), QUESTION], env=env)
        if phases["rc"] != 0:
            print(f"\nphases ({name}): failed: {phases['stderr'][-500:]}")
            continue
        got = json.loads(phases["stdout"].strip().splitlines()[-1])
        print(f"\nphases ({name}): " + ", ".join(
            f"{k} {v:.2f} s" if isinstance(v, float) else f"{k}: {v}" for k, v in got.items()))

    top = importtime(cmd)
    print("\nImport chain of `qabot ask` (python -X importtime, top-level imports, cumulative):")
    print(table(["module", "cumulative s", "self s"], [[m, c, s] for c, s, m in top[:12]]))

    cold = median([r["seconds"] for r in runs["qabot ask (default)"]])
    rss = median([r["rss_mb"] for r in runs["qabot ask (default)"]])
    torch_cold = median([r["seconds"] for r in runs["qabot ask, QABOT_ONNX=0 (torch)"]])
    print(f"\ncoldstart: `qabot ask` first answer {cold:.2f} s (goal <= 2 s) [{'PASS' if cold <= 2 else 'MISS'}], "
          f"peak RSS {rss:.0f} MB; with torch query path {torch_cold:.2f} s")
    return {"cold_s": cold, "rss_mb": rss, "torch_cold_s": torch_cold}


if __name__ == "__main__":
    main()
