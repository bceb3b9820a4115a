"""Gold-set evaluation: ask every gold question through `QA.answer()` and score the results.

A gold file is JSON Lines: {"id", "question", "answers": [accepted substrings], "evidence":
verbatim supporting span | null, "source": path relative to the corpus | null, "kind"}; kind
"unanswerable" marks questions the documents do not answer (the right output is a refusal).
"""
from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.answer import QA
from bot.schema import Answer

GOLD_KEYS = {"id", "question", "answers", "evidence", "source", "kind"}


class GoldError(ValueError):
    pass


def load_gold(path: Path) -> list[dict]:
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GoldError(f"cannot read gold file {path} ({exc.strerror or exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldError(f"{path}:{number}: not JSON ({exc.msg})") from None
        missing = GOLD_KEYS - set(item)
        if missing:
            raise GoldError(f"{path}:{number}: missing keys {sorted(missing)}")
        items.append(item)
    if not items:
        raise GoldError(f"{path} has no questions")
    return items


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


class EvidenceLocator:
    """Finds a gold evidence span in the extracted text of its document (offsets for overlap)."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = corpus
        self._docs: dict[str, str | None] = {}

    def span(self, source: str, evidence: str) -> tuple[int, int] | None:
        if source not in self._docs:
            from bot.load import LoadError, load_document

            try:
                self._docs[source] = load_document(self.corpus / source, source).text
            except LoadError:
                self._docs[source] = None
        text = self._docs[source]
        if text is None:
            return None
        at = text.find(evidence)
        if at < 0:  # the loader may have rendered markup or reflowed lines: match on words
            words = re.findall(r"\w+", evidence)
            if not words:
                return None
            pattern = r"\W+".join(re.escape(w) for w in words)
            m = re.search(pattern, text)
            return (m.start(), m.end()) if m else None
        return at, at + len(evidence)


def _overlaps(start: int, end: int, span: tuple[int, int] | None) -> bool:
    return span is not None and start < span[1] and span[0] < end


def evaluate(qa: QA, items: list[dict], k: int = 5, on_item=None) -> EvalReport:
    locator = EvidenceLocator(qa.settings.corpus)
    report = EvalReport(k=k)
    for item in items:
        started = time.perf_counter()
        answer: Answer = qa.answer(item["question"], k=k)
        latency = (time.perf_counter() - started) * 1e3
        hits, _ = qa.retriever.retrieve(answer.standalone_question or item["question"], k)
        answerable = item["kind"] != "unanswerable"
        answer_ok = citation_ok = rank = None
        if answerable:
            text = _norm(answer.text)
            answer_ok = not answer.refused and any(_norm(a) in text for a in item["answers"])
            span = locator.span(item["source"], item["evidence"]) if item.get("evidence") else None
            citation_ok = not answer.refused and any(
                c.source == item["source"] and _overlaps(c.start, c.end, span) for c in answer.citations)
            for i, hit in enumerate(hits, start=1):
                if hit.chunk.source == item["source"] and _overlaps(hit.chunk.start, hit.chunk.end, span):
                    rank = i
                    break
        result = ItemResult(item["id"], item["question"], item["kind"], answer.text, answer.refused,
                            answer_ok, citation_ok, rank, round(latency, 1))
        report.items.append(result)
        if on_item:
            on_item(result)
    return report
