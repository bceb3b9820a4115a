"""Full ingest of the Python 3.11 docs (reST sources of Debian's python3.11-doc) through the real
CLI, then a re-ingest of the unchanged corpus; index size and each run's peak RSS.

    python -m benchmarks.pydocs [--keep]

The index is built in $QABOT_BENCH_DIR (default /tmp/qabot-bench/pydocs-index), from scratch;
latency and coldstart reuse it.
"""
from __future__ import annotations

import argparse
import re
import shutil

from benchmarks.common import PYDOCS, PYDOCS_INDEX, machine, median, pydocs_available, qabot_cmd, run_child_rss, table

SUMMARY = re.compile(r"(\d+) chunks embedded, (\d+) in index; ([\d.]+) s")


def dir_size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pydocs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reingests", type=int, default=3, help="re-ingest repetitions (median)")
    args = parser.parse_args(argv)
    if not pydocs_available():
        raise SystemExit(f"needs the Python 3.11 docs at {PYDOCS} (apt-get install python3.11-doc)")

    shutil.rmtree(PYDOCS_INDEX, ignore_errors=True)
    cmd = qabot_cmd() + ["ingest", "--corpus", str(PYDOCS), "--index", str(PYDOCS_INDEX), "--quiet"]
    full = run_child_rss(cmd)
    if full["rc"] != 0:
        raise SystemExit(f"ingest failed:\n{full['stderr'][-3000:]}")
    m = SUMMARY.search(full["stderr"])
    embedded, total, inner = (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else (0, 0, float("nan"))
    size_mb = dir_size(PYDOCS_INDEX) / 1e6

    again = [run_child_rss(cmd) for _ in range(args.reingests)]
    for r in again:
        if r["rc"] != 0:
            raise SystemExit(f"re-ingest failed:\n{r['stderr'][-3000:]}")
    re_wall = median([r["seconds"] for r in again])
    re_inner = median([float(SUMMARY.search(r["stderr"]).group(3)) for r in again if SUMMARY.search(r["stderr"])] or [float("nan")])
    re_rss = max(r["rss_mb"] for r in again)

    files = sum(1 for p in PYDOCS.rglob("*.txt"))
    print(f"Python 3.11 docs: {files} reST files, {PYDOCS} ({machine()})")
    print(table(["run", "wall s", "ingest s", "chunks embedded", "chunks/s", "peak RSS MB"], [
        ["full ingest (new index)", full["seconds"], inner, embedded, embedded / inner if inner else float("nan"),
         full["rss_mb"]],
        [f"re-ingest, unchanged (median of {len(again)})", re_wall, re_inner, 0, float("nan"), re_rss],
    ]))
    print(f"index: {total} chunks, {size_mb:.1f} MB on disk ({PYDOCS_INDEX})")
    ok = re_wall <= 2.0
    print(f"\npydocs: full ingest {full['seconds']:.0f} s ({total} chunks, {embedded / inner:.1f} chunks/s), "
          f"re-ingest {re_wall:.2f} s (goal <= 2 s) [{'PASS' if ok else 'MISS'}], index {size_mb:.0f} MB, "
          f"peak RSS {full['rss_mb']:.0f} MB")
    return {"full_s": full["seconds"], "chunks": total, "reingest_s": re_wall, "index_mb": size_mb,
            "rss_mb": full["rss_mb"]}


if __name__ == "__main__":
    main()
