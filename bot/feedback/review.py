"""Turning feedback into work: the week's questions, refusals and 👎 (with reasons) grouped and
counted, most frequent first (`qabot feedback report`), and the 👎 and refused questions as gold
set candidates for a person to complete (`qabot feedback export --gold`).

Questions are grouped by their words (case, spacing and end punctuation aside), so "How do I
install it?" and "how do i install it" count as one.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from bot.feedback.votes import FeedbackStore


def question_key(question: str) -> str:
    return re.sub(r"[\s?!.]+$", "", " ".join(question.casefold().split()))


@dataclass
class Group:
    """One question, as often as it was asked (or refused, or voted down)."""

    question: str  # the latest wording
    count: int = 0
    answer: str = ""  # the latest answer given
    sources: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    scopes: set[str] = field(default_factory=set)


@dataclass
class Review:
    since: datetime
    asked: int = 0
    questions: list[Group] = field(default_factory=list)
    refused: list[Group] = field(default_factory=list)
    down: list[Group] = field(default_factory=list)

    @property
    def refusals(self) -> int:
        return sum(g.count for g in self.refused)

    @property
    def downvotes(self) -> int:
        return sum(g.count for g in self.down)


def _grouped(items: list[dict]) -> list[Group]:
    """`items` (question, answer, sources, reason?, scope?) grouped by question_key, most
    frequent first (ties: the most recent first); `items` are oldest first."""
    groups: dict[str, Group] = {}
    last_seen: Counter = Counter()
    for i, item in enumerate(items):
        key = question_key(item["question"])
        group = groups.setdefault(key, Group(item["question"]))
        group.question, group.answer, group.sources = item["question"], item["answer"], item["sources"]
        group.count += 1
        if item.get("reason"):
            group.reasons.append(item["reason"])
        if item.get("scope"):
            group.scopes.add(item["scope"])
        last_seen[key] = i
    return sorted(groups.values(), key=lambda g: (-g.count, -last_seen[question_key(g.question)]))


def review(store: FeedbackStore, days: float = 7, scope: str | None = None, now: float | None = None) -> Review:
    """What happened in the last `days` (in `scope` only, if given)."""
    now = time.time() if now is None else now
    since = now - days * 86400
    answers = [a for a in store.answers_since(since) if scope is None or a["scope"] == scope]
    since_iso = datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="seconds")
    down = [{"question": v.question, "answer": v.answer, "sources": v.sources, "reason": v.reason, "scope": v.scope}
            for v in store.list() if v.vote == "down" and v.created_at >= since_iso
            and (scope is None or v.scope == scope)]
    return Review(since=datetime.fromtimestamp(since, timezone.utc), asked=len(answers),
                  questions=_grouped(answers), refused=_grouped([a for a in answers if a["refused"]]),
                  down=_grouped(down))


def report_lines(r: Review, top: int = 10) -> list[str]:
    """The report as lines of text, for a terminal or a file."""
    def one(text: str, limit: int = 90) -> str:
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    lines = [f"Since {r.since:%Y-%m-%d %H:%M} UTC: {r.asked} question{'s' * (r.asked != 1)} "
             f"({len(r.questions)} different), {r.refusals} refused, {r.downvotes} 👎"]
    for title, groups in (("Most asked", r.questions), ("Refused (no answer found)", r.refused),
                          ("👎 (not helpful), with reasons", r.down)):
        lines += ["", title]
        if not groups:
            lines.append("  (none)")
        for g in groups[:top]:
            lines.append(f"  {g.count:>3}×  {one(g.question)}")
            for reason in g.reasons[-3:]:
                lines.append(f"        “{one(reason, 120)}”")
        if len(groups) > top:
            lines.append(f"  … and {len(groups) - top} more")
    return lines


def gold_candidates(r: Review) -> list[dict]:
    """The 👎 and refused questions as gold items for a person to complete: `answers`, `evidence`
    and `source` to fill in (source: the first cited, as a hint), `kind` "todo" to set (e.g. to
    "unanswerable" if the documents really do not answer it). The answer given, its sources, why
    it is here and the reasons users gave come along for that person."""
    items, seen = [], set()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    for why, groups in (("down", r.down), ("refused", r.refused)):
        for g in groups:
            key = question_key(g.question)
            if key in seen:
                continue
            seen.add(key)
            items.append({
                "id": f"feedback-{stamp}-{len(items) + 1:03d}", "question": g.question, "answers": [],
                "evidence": None, "source": next((s.get("source") for s in g.sources if s.get("source")), None),
                "kind": "todo", "why": why, "times": g.count, "answer_given": g.answer, "sources": g.sources,
                "reasons": g.reasons,
            })
    return items
