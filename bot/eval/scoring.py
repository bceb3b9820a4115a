"""Scoring a gold set: every question goes through `QA.answer()`, and the Answer's own trace (its
citations and what was retrieved for it) is scored against the gold answers and evidence.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from bot.eval.gold import EvidenceLocator
from bot.qa.pipeline import QA
from bot.schema import Answer

def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class ItemResult:
    id: str
    question: str
    kind: str
    answer: str
    refused: bool
    answer_correct: bool | None  # None for unanswerable items
    citation_correct: bool | None
    evidence_rank: int | None  # 1-based rank of the first retrieved chunk holding the evidence
    latency_ms: float


@dataclass
class EvalReport:
    items: list[ItemResult] = field(default_factory=list)
    k: int = 5

    @property
    def metrics(self) -> dict:
        answerable = [r for r in self.items if r.kind != "unanswerable"]
        unanswerable = [r for r in self.items if r.kind == "unanswerable"]
        refused = [r for r in self.items if r.refused]
        latencies = sorted(r.latency_ms for r in self.items)

        def ratio(n, d):
            return round(n / d, 4) if d else None

        return {
            "questions": len(self.items),
            "answerable": len(answerable),
            "unanswerable": len(unanswerable),
            "answer_accuracy": ratio(sum(bool(r.answer_correct) for r in answerable), len(answerable)),
            "citation_accuracy": ratio(sum(bool(r.citation_correct) for r in answerable), len(answerable)),
            "refusal_precision": ratio(sum(r.kind == "unanswerable" for r in refused), len(refused)),
            "refusal_recall": ratio(sum(r.refused for r in unanswerable), len(unanswerable)),
            "overall_accuracy": ratio(
                sum(bool(r.answer_correct) for r in answerable) + sum(r.refused for r in unanswerable),
                len(self.items)),
            f"recall@{self.k}": ratio(sum(r.evidence_rank is not None for r in answerable), len(answerable)),
            "mrr": ratio(sum(1 / r.evidence_rank for r in answerable if r.evidence_rank), len(answerable)),
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p95_ms": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1)
            if latencies else None,
        }

    def to_json(self) -> dict:
        return {"metrics": self.metrics, "items": [r.__dict__ for r in self.items]}


def _overlaps_span(start: int, end: int, span: tuple[int, int] | None) -> bool:
    return span is not None and start < span[1] and span[0] < end


def evaluate(qa: QA, items: list[dict], k: int = 5, on_item=None) -> EvalReport:
    locator = EvidenceLocator(qa.settings.corpus)
    report = EvalReport(k=k)
    for item in items:
        started = time.perf_counter()
        answer: Answer = qa.answer(item["question"], k=k)
        latency = (time.perf_counter() - started) * 1e3
        hits = answer.retrieved[:k]  # what the answer was drawn from: no second retrieval
        answerable = item["kind"] != "unanswerable"
        answer_ok = citation_ok = rank = None
        if answerable:
            text = _norm(answer.text)
            answer_ok = not answer.refused and any(_norm(a) in text for a in item["answers"])
            span = locator.span(item["source"], item["evidence"]) if item.get("evidence") else None
            citation_ok = not answer.refused and any(
                c.source == item["source"] and _overlaps_span(c.start, c.end, span) for c in answer.citations)
            for i, hit in enumerate(hits, start=1):
                if hit.chunk.source == item["source"] and _overlaps_span(hit.chunk.start, hit.chunk.end, span):
                    rank = i
                    break
        result = ItemResult(item["id"], item["question"], item["kind"], answer.text, answer.refused,
                            answer_ok, citation_ok, rank, round(latency, 1))
        report.items.append(result)
        if on_item:
            on_item(result)
    return report
