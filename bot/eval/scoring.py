"""Scoring a gold set: every question goes through `QA.answer()`, and the Answer's own trace (its
lead, its citations with their highlighted spans, and what was retrieved for it) is scored
against the gold answers and evidence.

Scoring is strict. An answer is right when it is not a refusal, contains an accepted answer,
and, when it puts a short answer in front of its sentence ("Rogozin — …"), that lead itself
contains an accepted answer: a right sentence behind a wrong lead is a wrong answer. A citation
is right when the span it highlights (or, without a span, the passage it quotes) overlaps the
gold evidence.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from bot.eval.gold import EvidenceLocator
from bot.qa.pipeline import QA
from bot.schema import Answer, Citation


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
    lead: str | None = None
    lead_correct: bool | None = None  # None: no lead, or an unanswerable item
    tags: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    answerer: str = "extractive"  # which answerer's answer was shown
    fallback_reason: str | None = None  # why the configured LLM's answer was not shown, if it was not


def _ratio(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _metrics(items: list[ItemResult], k: int) -> dict:
    answerable = [r for r in items if r.kind != "unanswerable"]
    unanswerable = [r for r in items if r.kind == "unanswerable"]
    refused = [r for r in items if r.refused]
    led = [r for r in answerable if r.lead is not None and not r.refused]
    return {
        "questions": len(items),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "answer_accuracy": _ratio(sum(bool(r.answer_correct) for r in answerable), len(answerable)),
        "lead_accuracy": _ratio(sum(bool(r.lead_correct) for r in led), len(led)),
        "wrong_leads": sum(r.lead_correct is False for r in led),
        "citation_accuracy": _ratio(sum(bool(r.citation_correct) for r in answerable), len(answerable)),
        "refusal_precision": _ratio(sum(r.kind == "unanswerable" for r in refused), len(refused)),
        "refusal_recall": _ratio(sum(r.refused for r in unanswerable), len(unanswerable)),
        "overall_accuracy": _ratio(
            sum(bool(r.answer_correct) for r in answerable) + sum(r.refused for r in unanswerable), len(items)),
        f"recall@{k}": _ratio(sum(r.evidence_rank is not None for r in answerable), len(answerable)),
        "mrr": _ratio(sum(1 / r.evidence_rank for r in answerable if r.evidence_rank), len(answerable)),
    }


@dataclass
class EvalReport:
    items: list[ItemResult] = field(default_factory=list)
    k: int = 5
    llm: bool = False  # an LLM answerer was configured

    @property
    def metrics(self) -> dict:
        latencies = sorted(r.latency_ms for r in self.items)
        llm = {}
        if self.llm:  # how often the LLM's answer was shown, and how often the extractive one instead
            llm = {"llm_answers": sum(r.answerer.startswith("llm") for r in self.items),
                   "llm_fallbacks": sum(r.fallback_reason is not None for r in self.items)}
        return {
            **_metrics(self.items, self.k),
            **llm,
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p95_ms": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1)
            if latencies else None,
        }

    def fallback_reasons(self) -> dict[str, int]:
        """How many answers fell back to the extractive answerer, per reason (its words before
        any detail in brackets)."""
        counts: dict[str, int] = defaultdict(int)
        for r in self.items:
            if r.fallback_reason:
                counts[r.fallback_reason.split(" (")[0]] += 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def groups(self) -> dict[str, dict]:
        """The metrics per kind of question ("kind:who") and per tag ("tag:two_hop")."""
        by: dict[str, list[ItemResult]] = defaultdict(list)
        for r in self.items:
            by[f"kind:{r.kind}"].append(r)
            for tag in r.tags:
                by[f"tag:{tag}"].append(r)
        return {name: _metrics(items, self.k) for name, items in sorted(by.items())}

    def failures(self) -> list[ItemResult]:
        return [r for r in self.items if not passed(r)]

    def to_json(self) -> dict:
        fallbacks = {"fallback_reasons": self.fallback_reasons()} if self.llm else {}
        return {"metrics": self.metrics, **fallbacks, "groups": self.groups(), "items": [asdict(r) for r in self.items]}


def passed(r: ItemResult) -> bool:
    return r.refused if r.kind == "unanswerable" else bool(r.answer_correct)


def _overlaps_span(start: int, end: int, span: tuple[int, int] | None) -> bool:
    return span is not None and start < span[1] and span[0] < end


def _cited_span(c: Citation) -> tuple[int, int]:
    """Where in the document the citation points: its highlighted span, else the whole passage."""
    if c.span_start is not None and c.span_end is not None and c.span_end > c.span_start:
        return c.start + c.span_start, c.start + c.span_end
    return c.start, c.end


def score(item: dict, answer: Answer, locator: EvidenceLocator, k: int, latency_ms: float) -> ItemResult:
    """One gold item against the Answer the pipeline gave."""
    answerable = item["kind"] != "unanswerable"
    answer_ok = citation_ok = rank = lead_ok = None
    lead = answer.lead if not answer.refused else None
    if answerable:
        accepted = [_norm(a) for a in item["answers"]]
        text = _norm(answer.text)
        if lead is not None:
            lead_ok = any(a in _norm(lead) for a in accepted)
        answer_ok = not answer.refused and any(a in text for a in accepted) and lead_ok is not False
        span = locator.span(item["source"], item["evidence"]) if item.get("evidence") else None
        citation_ok = not answer.refused and any(
            c.source == item["source"] and _overlaps_span(*_cited_span(c), span) for c in answer.citations)
        for i, hit in enumerate(answer.retrieved[:k], start=1):  # what the answer was drawn from
            if hit.chunk.source == item["source"] and _overlaps_span(hit.chunk.start, hit.chunk.end, span):
                rank = i
                break
    return ItemResult(item["id"], item["question"], item["kind"], answer.text, answer.refused,
                      answer_ok, citation_ok, rank, round(latency_ms, 1), lead, lead_ok,
                      list(item.get("tags") or []), list(item["answers"]), answer.answerer, answer.fallback_reason)


def evaluate(qa: QA, items: list[dict], k: int = 5, on_item=None) -> EvalReport:
    locator = EvidenceLocator(qa.settings.corpus)
    report = EvalReport(k=k, llm=qa.llm_answerer is not None)
    for item in items:
        started = time.perf_counter()
        answer = qa.answer(item["question"], k=k)
        result = score(item, answer, locator, k, (time.perf_counter() - started) * 1e3)
        report.items.append(result)
        if on_item:
            on_item(result)
    return report
