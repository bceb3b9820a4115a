"""Warm answer latency over the Python-docs index: p50/p95 of `QA.answer()` and of each step
(embed / dense / bm25 / fusion / answer), the gold questions asked several times.

    python -m benchmarks.latency [--passes 3]
"""
from __future__ import annotations

import argparse
import time

from benchmarks.common import add_corpus_argument, ensure_index, gold_questions, machine, median, pct, table

STEPS = ("embed", "dense", "bm25", "fusion", "answer")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=3)
    add_corpus_argument(parser)
    args = parser.parse_args(argv)
    try:
        from bot.qa.pipeline import QA
    except ImportError:
        raise SystemExit("bot.answer is not there yet: nothing to measure") from None
    from bot.config import Settings

    index = ensure_index(args.corpus)
    settings = Settings(corpus=args.corpus, index=index)
    t = time.perf_counter()
    qa = QA(settings)
    qa.warm_up()
    load_s = time.perf_counter() - t
    questions = gold_questions()
    for q in questions[:3]:
        qa.answer(q)
    # How much of the answer step is embedding the candidate sentences: the embedder's own
    # `embed_for_ranking`, timed around (the answerer is not touched).
    ranking: list[float] = []
    inner = qa.embedder.embed_for_ranking

    def timed_ranking(texts):
        t = time.perf_counter()
        try:
            return inner(texts)
        finally:
            ranking[-1] += (time.perf_counter() - t) * 1e3

    qa.embedder.embed_for_ranking = timed_ranking

    steps: dict[str, list[float]] = {s: [] for s in (*STEPS, "total")}
    wall: list[float] = []
    for _ in range(args.passes):
        for q in questions:
            ranking.append(0.0)
            t = time.perf_counter()
            answer = qa.answer(q)
            wall.append((time.perf_counter() - t) * 1e3)
            for s in steps:
                if s in answer.timings_ms:
                    steps[s].append(answer.timings_ms[s])
    engines = qa.embedder.registry  # what answered: the process-wide registry
    engine = "ONNX fp32" if engines.onnx_fp32() is not None else f"torch {qa.embedder.precision}"
    engine += f"; answer sentences: {'int8 ONNX' if engines.onnx_int8() is not None else engine}"
    print(f"Warm answers: {len(questions)} gold questions x {args.passes} passes over {index} "
          f"(query embedding: {engine}; {machine()})")
    rows = [[s, median(v), pct(v, 95), max(v)] for s, v in steps.items() if v]
    rows.insert(len([s for s in STEPS if steps[s]]), ["  answer: of it, ranking embeds", median(ranking), pct(ranking, 95),
                                                     max(ranking)])
    rows.append(["wall (answer() call)", median(wall), pct(wall, 95), max(wall)])
    print(table(["step", "p50 ms", "p95 ms", "max ms"], rows))
    p50, p95 = median(wall), pct(wall, 95)
    ok = p50 <= 40 and p95 <= 80
    print(f"\nlatency: warm answer p50 {p50:.1f} ms, p95 {p95:.1f} ms (goals <= 40 / <= 80 ms) "
          f"[{'PASS' if ok else 'MISS'}]; QA load + warm-up {load_s:.1f} s")
    return {"p50_ms": p50, "p95_ms": p95, "ranking_embed_p50_ms": median(ranking),
            **{f"{s}_p50_ms": median(v) for s, v in steps.items() if v}}


if __name__ == "__main__":
    main()
