"""Run every benchmark in turn and end with their summary lines.

    python -m benchmarks.run [embed pydocs latency coldstart firstrun]

pydocs builds the Python-docs index that latency and coldstart then use, so it runs before them.
"""
from __future__ import annotations

import importlib
import io
import sys
import time
from contextlib import redirect_stdout

ORDER = ("embed", "pydocs", "latency", "coldstart", "firstrun")


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for stream in self.streams:
            stream.write(s)
        return len(s)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    summaries = []
    failed = 0
    for name in sorted(names, key=ORDER.index):
        print(f"\n=== benchmarks.{name} ===", flush=True)
        started = time.perf_counter()
        captured = io.StringIO()
        try:
            with redirect_stdout(_Tee(sys.stdout, captured)):
                importlib.import_module(f"benchmarks.{name}").main([])
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed += 1
                summaries.append(f"{name}: not run ({exc.code})")
                continue
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed += 1
            summaries.append(f"{name}: failed ({type(exc).__name__}: {exc})")
            continue
        lines = [line for line in captured.getvalue().splitlines() if line.startswith(f"{name}:")]
        summaries.append((lines[-1] if lines else f"{name}: done") + f"  ({time.perf_counter() - started:.0f} s)")
    print("\n=== summary ===")
    for line in summaries:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
