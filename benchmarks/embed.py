"""Ingest-embedding throughput: our pipeline vs stock fp32 sentence-transformers, same chunks,
same run, alternating repetitions; plus fidelity (cosine to fp32) and per-question latency.

    python -m benchmarks.embed [--chunks 384] [--reps 3] [--sweep] [--fidelity]

Every OpenVINO precision (int8-static, int8, bf16 where native, fp32) is timed against stock in the same run;
the CPU flags, the load and the precision the probe chose ("auto") are printed with the figures.
`--sweep` also measures batch sizes (16/32/64/128 full-length texts per batch) and torch thread
counts for the torch engine. `--fidelity` builds an index of each small corpus in each precision
(ISS = corpus/, phantom) and scores recall@5 and MRR on their gold and dev sets with `qabot eval`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (BENCH_DIR, REPO, cos as fmt_cos, machine, median, pct, pydocs_chunks, qabot_cmd,
                               run_child, table)

QUESTIONS = [
    "when will Russia leave the ISS?",
    "how do I read a file line by line?",
    "what does functools.lru_cache do?",
    "difference between a list and a tuple",
    "how to sort a dict by value",
    "which exception does int() raise for a bad string?",
    "how can I run a subprocess and capture its output?",
    "what is the GIL?",
]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=384)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--fidelity", action="store_true", help="only the recall@5/MRR table per precision")
    args = parser.parse_args(argv)
    if args.fidelity:
        return fidelity()

    import torch
    from sentence_transformers import SentenceTransformer

    from bot.embed import Embedder, model_path
    from bot.embed.model import QUANTIZED, has_native_bf16
    from bot.ingest.pipeline import EMBED_GROUP as GROUP  # how ingest calls the embedder

    texts = pydocs_chunks(args.chunks)
    stock = SentenceTransformer(model_path(), device="cpu")
    ours = Embedder()  # auto precision, as `qabot ingest` runs it
    fp32 = Embedder(precision="fp32")
    engines = ours.registry  # the process-wide registry both embedders share

    def ours_groups():  # as the ingest pipeline calls it: groups of EMBED_GROUP chunks
        return np.vstack([ours.embed(texts[i:i + GROUP]) for i in range(0, len(texts), GROUP)])

    def run(engine):  # one engine on all the chunks, tokenising included (as `embed` does)
        return engine.run(engines.tokenizer().encode_batch(texts))

    def torch_fp32():
        return run(engines.torch("fp32"))

    def onnx_fp32():
        return run(engines.onnx_fp32())

    def torch_ours():
        return run(engines.torch(ours.precision))

    probed = engines.probe()  # what "auto" chose on this CPU (measured once, remembered)
    ours_name = f"ours: {ours.ingest_engine}, as ingest runs it"
    candidates = {
        "stock fp32 (ST encode)": lambda: stock.encode(texts),
        ours_name: ours_groups,
        f"torch {ours.precision}{' autocast' if ours.precision == 'bf16' else ''} (token-sorted)": torch_ours,
        "torch fp32 (token-sorted)": torch_fp32,
        "ONNX Runtime fp32": onnx_fp32,
    }
    for precision in ("int8-static", "int8", "bf16", "fp32"):  # every OpenVINO precision, whichever "auto" chose
        if precision != ours.precision and engines.openvino(precision) is not None and (
                precision != "bf16" or has_native_bf16(engines.cpu_flags)):
            candidates[f"OpenVINO {precision}"] = lambda p=precision: run(engines.openvino(p))
    # Warm every engine (model load, ONNX export/session, autocast caches) outside the timing.
    ours.embed(texts[:64] * 2)
    fp32.warm_up()
    stock.encode(texts[:32])
    if engines.onnx_fp32() is None:
        del candidates["ONNX Runtime fp32"]
    if ours.ingest_engine.startswith("torch") or ours.precision in QUANTIZED:
        del candidates[next(n for n in candidates if n.startswith("torch " + ours.precision))]

    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    vectors: dict[str, np.ndarray] = {}
    ratios: list[float] = []
    for rep in range(args.reps):
        names = list(candidates) if rep % 2 == 0 else list(reversed(candidates))  # alternate order
        for name in names:
            t = time.perf_counter()
            out = candidates[name]()
            seconds[name].append(time.perf_counter() - t)
            vectors[name] = out
        ratios.append(seconds["stock fp32 (ST encode)"][-1] / seconds[ours_name][-1])

    ref = np.asarray(vectors["stock fp32 (ST encode)"], dtype=np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    stock_s = median(seconds["stock fp32 (ST encode)"])
    rows = []
    for name, secs in seconds.items():
        cos = (vectors[name] * ref).sum(axis=1)
        rows.append([name, len(texts) / median(secs), f"{stock_s / median(secs):.2f}x",
                     fmt_cos(float(cos.min())), fmt_cos(float(cos.mean()))])
    print(f"Embedding {len(texts)} Python-docs chunks, {args.reps} alternating repetitions, medians "
          f"({machine()}; load average {os.getloadavg()[0]:.1f} when done; torch threads {torch.get_num_threads()})")
    if probed is not None:
        print(f"engine probe (auto): {probed.choice}; its chunks/s {probed.chunks_per_s}, cosine to fp32 "
              f"(mean, min) int8 {probed.int8_cosine}, int8-static {probed.int8_static_cosine}, under load {probed.load}")
    print(table(["pipeline", "chunks/s", "x stock", "min cos", "mean cos"], rows))

    # Per-question latency: one short question, as `qabot ask` embeds it.
    def per_query(fn, n=3):
        for q in QUESTIONS[:3]:
            fn(q)
        ms = []
        for _ in range(n):
            for q in QUESTIONS:
                t = time.perf_counter()
                fn(q)
                ms.append((time.perf_counter() - t) * 1e3)
        return ms

    q_stock = per_query(lambda q: stock.encode([q]))
    q_ours = per_query(lambda q: ours.embed([q]))
    print()
    print(table(["question embedding", "p50 ms", "p95 ms"], [
        ["stock fp32 (ST encode)", median(q_stock), pct(q_stock, 95)],
        [f"ours ({'ONNX fp32' if engines.onnx_fp32() is not None else 'torch ' + ours.precision})",
         median(q_ours), pct(q_ours, 95)],
    ]))

    agreement = ranking_agreement(vectors[ours_name], ours)
    if agreement is not None:
        print(f"\nquestions embedded in fp32 (ONNX) vs {ours.ingest_engine}, against the {ours.precision} "
              f"chunk vectors: same top hit for {agreement[0]}/{agreement[2]} questions, top-10 overlap "
              f"{agreement[1]:.1%}, min cos between the two query vectors {agreement[3]:.5f}")

    if args.sweep:
        sweep(texts, ref, ours)

    ratio = median(ratios)
    cos_min = float((vectors[ours_name] * ref).sum(axis=1).min())
    ours_cps = len(texts) / median(seconds[ours_name])
    summary = {"ratio": ratio, "ours_chunks_per_s": ours_cps, "stock_chunks_per_s": len(texts) / stock_s,
               "min_cos": cos_min, "query_ms_p50": median(q_ours)}
    print(f"\nembed: ours {ours_cps:.1f} chunks/s vs stock fp32 {len(texts) / stock_s:.1f} chunks/s = "
          f"{ratio:.2f}x (goal >= 3, median of per-repetition ratios), min cos {cos_min:.5f} (goal >= 0.999), "
          f"question {median(q_ours):.1f} ms p50 "
          f"[{'PASS' if ratio >= 3 and cos_min >= 0.999 else 'MISS'}]")
    return summary


def ranking_agreement(doc_vectors: np.ndarray, embedder):
    """Does embedding the question on the fp32 ONNX engine (as `qabot ask` does) rank the chunks
    as the index's own engine and precision would?"""
    from benchmarks.common import gold_questions

    onnx = embedder.registry.onnx_fp32()
    if onnx is None:
        return None
    questions = gold_questions() + QUESTIONS
    encodings = embedder.registry.tokenizer().encode_batch(questions)
    fast = onnx.run(encodings)
    same = embedder.engine_for_ingest().run(encodings)  # the index's own engine and precision
    top = lambda q: [list(np.argsort(-(doc_vectors @ v))[:10]) for v in q]  # noqa: E731
    pairs = list(zip(top(fast), top(same)))
    top1 = sum(a[0] == b[0] for a, b in pairs)
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in pairs]))
    return top1, overlap, len(questions), float((fast * same).sum(axis=1).min())


def sweep(texts, ref, embedder) -> None:
    """Batch size and thread count of the torch engine (alternating, medians)."""
    import torch

    precision, engines = embedder.precision, embedder.registry
    encodings = engines.tokenizer().encode_batch(texts)
    default_threads = torch.get_num_threads()
    configs = [(bs, default_threads) for bs in (16, 32, 64, 128)]
    if default_threads > 1:
        configs.append((32, 1))
    times: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    cos = {}
    for rep in range(3):
        for cfg in configs if rep % 2 == 0 else list(reversed(configs)):
            bs, threads = cfg
            torch.set_num_threads(threads)
            t = time.perf_counter()
            out = engines.torch(precision, bs * 256).run(encodings)
            times[cfg].append(time.perf_counter() - t)
            cos[cfg] = float((out * ref).sum(axis=1).min())
    torch.set_num_threads(default_threads)
    print()
    print(f"Torch engine sweep ({precision}, token-sorted batches; medians of 3)")
    print(table(["batch (full-length texts)", "threads", "chunks/s", "min cos"],
                [[bs, th, len(texts) / median(times[(bs, th)]), fmt_cos(cos[(bs, th)])] for bs, th in configs]))


FIDELITY_SETS = {  # corpus, gold and dev sets small enough to re-embed in every precision
    "ISS": (REPO / "corpus", ["tests/gold/iss_qa.jsonl", "tests/devsets/iss_dev.jsonl"]),
    "phantom": (Path("/work/shared/data/phantom-dev/corpus"), ["tests/devsets/phantom_dev.jsonl"]),
}


def fidelity() -> dict:
    """recall@5 and MRR (`qabot eval`, the real answer path: questions in fp32, hybrid retrieval)
    on indexes of the same corpus embedded in each precision."""
    import json

    from bot.embed import EngineRegistry
    from bot.embed.model import has_native_bf16

    registry = EngineRegistry.default()
    precisions = ["fp32", "int8"] + (["bf16"] if has_native_bf16(registry.cpu_flags) else []) + ["int8-static"]
    print(f"Fidelity: recall@5 / MRR per index precision ({machine()})")
    rows, scores = [], {}
    for name, (corpus, golds) in FIDELITY_SETS.items():
        if not corpus.is_dir():
            print(f"(skipped {name}: no corpus at {corpus})")
            continue
        for precision in precisions:
            index = BENCH_DIR / f"fidelity-{name}-{precision}"
            env = {"QABOT_PRECISION": precision}
            started = time.perf_counter()
            built = run_child(qabot_cmd() + ["ingest", "--corpus", str(corpus), "--index", str(index), "--quiet"], env)
            if built["rc"] != 0:
                sys.exit(f"ingest {name} {precision} failed: {built['stderr'][-1000:]}")
            ingest_s = time.perf_counter() - started
            for gold in golds:
                res = run_child(qabot_cmd() + ["eval", "--gold", str(REPO / gold), "--corpus", str(corpus),
                                               "--index", str(index), "--json"], env)
                metrics = json.loads(res["stdout"])["metrics"]
                scores[(gold, precision)] = (metrics["recall@5"], metrics["mrr"])
                base = scores.get((gold, "fp32"), (metrics["recall@5"], metrics["mrr"]))
                rows.append([name, Path(gold).name, precision, f"{metrics['recall@5']:.3f}", f"{metrics['mrr']:.3f}",
                             f"{metrics['recall@5'] - base[0]:+.3f}", f"{metrics['mrr'] - base[1]:+.3f}",
                             f"{ingest_s:.0f} s", f"{os.getloadavg()[0]:.1f}"])
    print(table(["corpus", "set", "precision", "recall@5", "MRR", "Δ recall@5", "Δ MRR", "ingest", "load"], rows))
    worst = max((abs(scores[(g, p)][i] - scores[(g, "fp32")][i]) for (g, p) in scores for i in (0, 1)), default=0.0)
    print(f"\nlargest difference to fp32: {worst:.3f} (goal <= 0.01) [{'PASS' if worst <= 0.01 else 'MISS'}]")
    return {"scores": scores, "worst": worst}


if __name__ == "__main__":
    main()
