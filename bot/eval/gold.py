"""Gold sets: questions with accepted answers and the verbatim evidence that supports them.

A gold file is JSON Lines: {"id", "question", "answers": [accepted substrings], "evidence":
verbatim supporting span | null, "source": path relative to the corpus | null, "kind"}; kind
"unanswerable" marks questions the documents do not answer (the right output is a refusal).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from bot.errors import GoldError
from bot.ingest.load import LoadError, load_document

GOLD_KEYS = {"id", "question", "answers", "evidence", "source", "kind"}


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


class EvidenceLocator:
    """Finds a gold evidence span in the extracted text of its document (offsets for overlap)."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = corpus
        self._docs: dict[str, str | None] = {}

    def span(self, source: str, evidence: str) -> tuple[int, int] | None:
        if source not in self._docs:
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
