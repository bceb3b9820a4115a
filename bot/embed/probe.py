"""Which ingest engine is fastest on this CPU, measured once and remembered.

The choice used to follow the CPU flags (bf16 where it is native, else fp32); on a CPU without
native bf16 that left ingest at 1.4x stock (issue #18). Now a short probe at first use times the
candidates on corpus-like texts (int8 weights with activations quantized on the fly; static int8,
whose activation ranges were calibrated beforehand; bf16 where the CPU has it natively; fp32), in
alternating rounds, and the fastest wins. Each int8 engine only takes part if it passes its
fidelity gate on this CPU (engines.INT8_INGEST_*). The result is kept in the cache directory keyed by
the CPU flags, the OpenVINO version and the model, so a CPU is probed once.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.embed.engines import PROBE_TEXTS, Engine

PROBE_VERSION = "5"  # bump when the probe or its candidates change (3: no warm-up round, slow ones dropped; 4: int8-static; 5: int8-static opt-in only)
# The flags that decide which kernels run (recorded with the result; the cache key has them all).
KERNEL_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
ROUNDS = 3  # timed rounds per candidate; the fastest round counts
# No untimed warm-up round: every candidate has just run its fidelity check (kernels built), and
# its first probe round was measured as fast as the next ones (int8 0.41 s then 0.43, fp32 0.54 then
# 0.49, bf16 0.14 then 0.135; 2 vCPUs Zen 5, load 1.8). It cost a round of every candidate.
# After a round, a candidate this many times slower than the fastest so far is not timed again:
# it cannot come within MARGIN by noise (rounds of one engine varied by up to 1.9x at load 1.8,
# and 1.15 x 1.9 < 2.5). On a CPU with native bf16 that drops int8 and fp32 (2.9x and 3.7x slower
# there) after one round: the probe took 1.5 s instead of 4.2 s.
DROP_FACTOR = 2.5
# Nor is a candidate that is slower than a more exact one: `choose` can never pick it (the more
# exact one is as close to the fastest, or closer). On a CPU with native bf16, int8 (0.8x bf16)
# then stops after one round: with the fourth candidate (int8-static) a first `qabot ingest` took
# 11.2 s without this rule and 9.1 s with it (Zen 4, 2 vCPUs, load 0.4-1.3; 8.8 / 7.9 s before int8-static).
# A less exact engine must be this much faster to be chosen: under load the probe is noisy (at
# load 5.7 it once timed int8 at 12.4 chunks/s and bf16 at 12.0, where the benchmark right after
# measured 17.1 and 26.5). Most exact first.
MARGIN = 1.15
# int8-static is last: its vectors are the furthest from fp32 (mean cosine 0.9975 on 192 Python-docs
# chunks; int8 0.9996, bf16 0.99998).
FIDELITY_ORDER = ("fp32", "bf16", "int8", "int8-static")

# Corpus-like texts: prose, reference-manual entries, configuration, code (what the gold and dev
# corpora hold), of the lengths chunks have (5 to 256 tokens).
PASSAGES = PROBE_TEXTS + [
    "Roscosmos said the country would leave the International Space Station after 2024 and build "
    "its own orbital station. NASA had hoped to keep the station running until 2030; without the "
    "Russian segment the station cannot keep its altitude, since the Progress cargo ships do the "
    "reboosts. Engineers discussed whether a commercial vehicle could take over that task.",
    "subprocess.run(args, *, stdin=None, input=None, stdout=None, stderr=None, capture_output=False, "
    "shell=False, cwd=None, timeout=None, check=False, encoding=None, errors=None, text=None, env=None) "
    "Run the command described by args. Wait for command to complete, then return a CompletedProcess "
    "instance. If check is true, and the process exits with a non-zero exit code, a "
    "CalledProcessError exception will be raised.",
    "smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, "
    "reject_unauth_destination, reject_rbl_client zen.spamhaus.org. The restrictions are applied in "
    "the context of the client RCPT TO command; postfix evaluates them in the order given and the "
    "first one that matches decides.",
    "def lru_cache(maxsize=128, typed=False):\n    \"\"\"Decorator to wrap a function with a memoizing "
    "callable that saves up to the maxsize most recent calls.\"\"\"\n    if isinstance(maxsize, int):\n"
    "        if maxsize < 0:\n            maxsize = 0\n    return decorating_function",
    "The crew of the phantom expedition kept a log of every landing site, the weather on arrival, "
    "and the names of the porters hired in each village. The log was later published as an "
    "appendix to the survey report, with a table of distances walked per day and a map.",
    "| Option | Default | Meaning |\n|---|---|---|\n| --chunk-size | 1000 | characters per chunk |\n"
    "| --chunk-overlap | 150 | characters shared by neighbouring chunks |\n| --k | 5 | passages handed "
    "to the answerer |",
    "Changed in version 3.8: the default protocol is 4. Added in version 3.11: the new tomllib "
    "module parses TOML documents. Deprecated since version 3.12: the distutils package is removed.",
    "A tuple is an immutable sequence; a list can be changed in place. " * 12,
]


@dataclass(frozen=True)
class ProbeResult:
    """The probe's choice and what it measured (kept as JSON in the cache)."""

    choice: str  # the precision ingest embeds in: "int8-static", "int8", "bf16" or "fp32"
    chunks_per_s: dict[str, float]  # per candidate that took part
    int8_cosine: tuple[float, float] | None  # (mean, min) to fp32 on the probe texts; None: not made
    flags: list[str]
    load: float  # the 1-minute load average when it ran: the figures are only as good as that
    seconds: float  # how long the probe took
    int8_static_cosine: tuple[float, float] | None = None  # the same for int8-static


def probe_file(cache_dir: Path, flags: Iterable[str], openvino_version: str, model_key: str) -> Path:
    key = hashlib.sha256(f"{PROBE_VERSION}|{openvino_version}|{model_key}|{' '.join(sorted(flags))}".encode())
    return Path(cache_dir) / "engine-probe" / f"{key.hexdigest()[:16]}.json"


def load(path: Path, precisions: Iterable[str]) -> ProbeResult | None:
    """The remembered probe, or None where there is none (or it is unreadable, or its choice is
    not a precision this build knows)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        result = ProbeResult(**{**raw, **{key: tuple(raw[key]) if raw.get(key) else None
                                          for key in ("int8_cosine", "int8_static_cosine")}})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return result if result.choice in precisions else None


def save(path: Path, result: ProbeResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def choose(speed: Mapping[str, float]) -> str:
    """The most exact precision whose speed is within MARGIN of the fastest."""
    fastest = max(speed.values())
    return next(p for p in sorted(speed, key=FIDELITY_ORDER.index) if speed[p] * MARGIN >= fastest)


def _dominated(name: str, timing: list[str], seconds: Mapping[str, list[float]]) -> bool:
    """Whether a more exact candidate still being timed has a faster best round than `name`."""
    rank = FIDELITY_ORDER.index
    return any(rank(other) < rank(name) and min(seconds[other]) < min(seconds[name])
               for other in timing if other in FIDELITY_ORDER and name in FIDELITY_ORDER)


def measure(tokenizer, candidates: Mapping[str, Engine], flags: Iterable[str],
            int8_cosine: tuple[float, float] | None, clock: Callable[[], float] = time.perf_counter,
            int8_static_cosine: tuple[float, float] | None = None) -> ProbeResult:
    """Time each candidate on the passages (ROUNDS alternating rounds; the fastest round of each,
    the least disturbed by other work; a candidate DROP_FACTOR slower than the fastest, or slower
    than a more exact one, is not timed again) and choose the most exact one within MARGIN of the
    fastest."""
    started = clock()
    encodings = tokenizer.encode_batch(PASSAGES)
    names = list(candidates)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    timing = list(names)
    for round_ in range(ROUNDS):
        for name in timing if round_ % 2 == 0 else reversed(timing):
            t = clock()
            candidates[name].run(encodings)
            seconds[name].append(clock() - t)
        best = min(min(seconds[name]) for name in timing)
        timing = [name for name in timing if min(seconds[name]) <= best * DROP_FACTOR and not _dominated(name, timing, seconds)]
    speed = {name: round(len(PASSAGES) / max(min(s), 1e-9), 1) for name, s in seconds.items()}
    return ProbeResult(choice=choose(speed), chunks_per_s=speed, int8_cosine=int8_cosine,
                       flags=[f for f in KERNEL_FLAGS if f in set(flags)], load=round(os.getloadavg()[0], 1),
                       seconds=round(clock() - started, 2), int8_static_cosine=int8_static_cosine)
