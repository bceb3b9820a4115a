"""Shared helpers for the benchmarks: real chunks from the Python docs, timing, tables."""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PYDOCS = Path("/usr/share/doc/python3.11/html/_sources")


def pydocs_available() -> bool:
    return PYDOCS.is_dir()


def pydocs_chunks(limit: int = 800, subdir: str = "library") -> list[str]:
    """Chunk texts made by our own loader and chunker from the Python docs, in corpus order,
    taking files until `limit` chunks (deterministic)."""
    from bot.ingest.chunk import chunk_document, make_splitter
    from bot.config import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
    from bot.ingest.load import LoadError, is_supported, load_document

    if not pydocs_available():
        sys.exit(f"needs the Python 3.11 docs at {PYDOCS} (apt-get install python3.11-doc)")
    splitter = make_splitter(DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP)
    texts: list[str] = []
    for path in sorted((PYDOCS / subdir).rglob("*")):
        if not path.is_file() or not is_supported(path):
            continue
        try:
            doc = load_document(path, path.relative_to(PYDOCS).as_posix())
        except LoadError:
            continue
        texts.extend(c.text for c in chunk_document(doc, splitter))
        if len(texts) >= limit:
            break
    return texts[:limit]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def median(xs):
    return statistics.median(xs)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    """Floats by magnitude; pass a string for anything that needs its own format (cosines)."""
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def cos(v: float) -> str:
    return f"{v:.6f}"


def _numeric(s: str) -> bool:
    try:
        float(s.rstrip("x%"))
        return True
    except ValueError:
        return False


def peak_rss_mb(children: bool = False) -> float:
    import resource

    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from bot.embed import cpu_flags

    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2")
    flags = " ".join(f for f in wanted if f in cpu_flags())
    load = os.getloadavg()[0]
    return (f"{model}, {os.cpu_count()} cores, flags: {flags or 'none of ' + ','.join(wanted)}; "
            f"load average {load:.1f} when started")


# --- a Python-docs index shared by the pydocs, latency and coldstart benchmarks ----------------

import tempfile  # noqa: E402

BENCH_DIR = Path(os.environ.get("QABOT_BENCH_DIR") or Path(tempfile.gettempdir()) / "qabot-bench")
PYDOCS_INDEX = BENCH_DIR / "pydocs-index"
REPO = Path(__file__).resolve().parent.parent
GOLD_PYDOCS = REPO / "tests" / "gold" / "pydocs_qa.jsonl"


def qabot_cmd() -> list[str]:
    return [sys.executable, "-m", "bot"]


def run_child(cmd: list[str], env: dict | None = None, stdin: str | None = None, cwd: Path = REPO) -> dict:
    """Run a command (in `cwd`, default this checkout); wall seconds, exit code and output."""
    import subprocess

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    out, err = proc.communicate(stdin)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rc": proc.returncode, "stdout": out, "stderr": err}


def run_child_rss(cmd: list[str], env: dict | None = None) -> dict:
    """Like run_child, with the child's peak RSS in MB from wait4 (Linux)."""
    import subprocess

    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                env={**os.environ, **(env or {})}, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"seconds": seconds, "rc": proc.returncode, "stdout": out.read(), "stderr": err.read(),
                "rss_mb": usage.ru_maxrss / 1024}


def add_corpus_argument(parser) -> None:
    """--corpus, for the benchmarks that ask questions of an index (latency, coldstart)."""
    parser.add_argument("--corpus", type=Path, default=PYDOCS,
                        help="corpus to index and ask (default: the whole Python 3.11 docs)")


def ensure_index(corpus: Path | None = None) -> Path:
    """The benchmark index of `corpus` (default: the whole Python docs, which benchmarks.pydocs
    builds): built once, then incremental (seconds)."""
    corpus = Path(corpus or PYDOCS)
    if corpus == PYDOCS and not pydocs_available():
        sys.exit(f"needs the Python 3.11 docs at {PYDOCS} (apt-get install python3.11-doc)")
    import hashlib

    index = PYDOCS_INDEX if corpus == PYDOCS else \
        BENCH_DIR / f"index-{hashlib.sha1(str(corpus.resolve()).encode()).hexdigest()[:10]}"
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    res = run_child(qabot_cmd() + ["ingest", "--corpus", str(corpus), "--index", str(index), "--quiet"])
    if res["rc"] != 0:
        sys.exit(f"ingest failed: {res['stderr'][-2000:]}")
    return index


def gold_questions() -> list[str]:
    import json

    with open(GOLD_PYDOCS, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f if line.strip()]
