"""Sanity checks for the gold question/answer sets under tests/gold/.

These tests deliberately do not import the ``bot`` package: they only check
that the gold data itself is well formed and grounded in its source documents.
"""

import json
import os
import re
from pathlib import Path

import pytest

HERE = Path(__file__).parent
GOLD_DIR = HERE / "gold"
ISS_GOLD = GOLD_DIR / "iss_qa.jsonl"
PYDOCS_GOLD = GOLD_DIR / "pydocs_qa.jsonl"
ISS_DOC = HERE.parent / "corpus" / "russia-iss-withdrawal.txt"
ISS_SOURCE = "russia-iss-withdrawal.txt"
PYDOCS_DIR = Path(
    os.environ.get("QABOT_PYDOCS_DIR", "/usr/share/doc/python3.11/html/_sources")
)

KINDS = {"when", "who", "how_many", "what", "why", "where", "yes_no", "unanswerable"}
KEYS = {"id", "question", "answers", "evidence", "source", "kind"}


def _load(path):
    items = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:  # pragma: no cover - failure path
                pytest.fail(f"{path.name}:{lineno}: invalid JSON: {exc}")
            assert isinstance(obj, dict), f"{path.name}:{lineno}: not an object"
            items.append(obj)
    return items


def _iss_text():
    """Document text of the ISS article: everything after the front matter."""
    raw = ISS_DOC.read_text(encoding="utf-8")
    lines = raw.splitlines(keepends=True)
    assert lines and lines[0].strip() == "---", "ISS article must start with '---'"
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[i + 1:])
    pytest.fail("ISS article front matter has no closing '---'")


def _norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


ISS_ITEMS = _load(ISS_GOLD)
PYDOCS_ITEMS = _load(PYDOCS_GOLD)
ALL_SETS = [("iss", ISS_ITEMS), ("pydocs", PYDOCS_ITEMS)]


@pytest.mark.parametrize("name,items", ALL_SETS, ids=[n for n, _ in ALL_SETS])
def test_schema(name, items):
    assert items, f"{name}: empty gold file"
    for it in items:
        where = f"{name}:{it.get('id')}"
        assert set(it) == KEYS, f"{where}: keys {sorted(it)} != {sorted(KEYS)}"
        assert isinstance(it["id"], str) and it["id"], where
        assert isinstance(it["question"], str) and it["question"].strip(), where
        assert isinstance(it["answers"], list), where
        assert all(isinstance(a, str) and a.strip() for a in it["answers"]), where
        assert it["kind"] in KINDS, f"{where}: bad kind {it['kind']!r}"
        if it["kind"] == "unanswerable":
            assert it["answers"] == [], f"{where}: unanswerable must have no answers"
            assert it["evidence"] is None, where
            assert it["source"] is None, where
        else:
            assert it["answers"], f"{where}: answerable item needs answers"
            assert isinstance(it["evidence"], str) and it["evidence"].strip(), where
            assert isinstance(it["source"], str) and it["source"], where


@pytest.mark.parametrize("name,items", ALL_SETS, ids=[n for n, _ in ALL_SETS])
def test_ids_and_questions_unique(name, items):
    ids = [it["id"] for it in items]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"{name}: duplicate ids {sorted(dup)}"
    qs = [_norm(it["question"]) for it in items]
    dupq = {q for q in qs if qs.count(q) > 1}
    assert not dupq, f"{name}: duplicate questions {sorted(dupq)}"


def test_id_prefixes():
    assert all(it["id"].startswith("iss-") for it in ISS_ITEMS)
    assert all(it["id"].startswith("py-") for it in PYDOCS_ITEMS)


def test_iss_counts():
    unans = [it for it in ISS_ITEMS if it["kind"] == "unanswerable"]
    assert len(ISS_ITEMS) >= 30, len(ISS_ITEMS)
    assert len(unans) >= 8, len(unans)
    assert len(ISS_ITEMS) - len(unans) >= 20


def test_pydocs_counts():
    answerable = [it for it in PYDOCS_ITEMS if it["kind"] != "unanswerable"]
    unans = [it for it in PYDOCS_ITEMS if it["kind"] == "unanswerable"]
    assert len(answerable) >= 40, len(answerable)
    sources = {it["source"] for it in answerable}
    assert len(sources) >= 20, sorted(sources)
    assert len(unans) >= 5, len(unans)


def test_iss_evidence_and_answers_in_document():
    text = _iss_text()
    ntext = _norm(text)
    problems = []
    for it in ISS_ITEMS:
        if it["kind"] == "unanswerable":
            continue
        if it["source"] != ISS_SOURCE:
            problems.append(f"{it['id']}: source {it['source']!r} != {ISS_SOURCE!r}")
        if it["evidence"] not in text:
            problems.append(f"{it['id']}: evidence not verbatim in document: {it['evidence']!r}")
        nev = _norm(it["evidence"])
        if not any(_norm(a) in nev or _norm(a) in ntext for a in it["answers"]):
            problems.append(f"{it['id']}: no accepted answer found in evidence or document")
    assert not problems, "\n".join(problems)


def test_iss_evidence_not_in_front_matter_only():
    """Evidence must come from the body, not from the metadata block."""
    raw = ISS_DOC.read_text(encoding="utf-8")
    body = _iss_text()
    front = raw[: len(raw) - len(body)]
    assert "title:" in front and "title:" not in body


def test_pydocs_evidence_and_answers_in_sources():
    if not PYDOCS_DIR.is_dir():
        pytest.skip(
            f"Python docs sources not found at {PYDOCS_DIR} "
            "(install python3.11-doc or set QABOT_PYDOCS_DIR)"
        )
    problems = []
    cache = {}
    for it in PYDOCS_ITEMS:
        if it["kind"] == "unanswerable":
            continue
        src = it["source"]
        path = PYDOCS_DIR / src
        if not path.is_file():
            problems.append(f"{it['id']}: source file missing: {src}")
            continue
        if src not in cache:
            cache[src] = path.read_text(encoding="utf-8")
        text = cache[src]
        if it["evidence"] not in text:
            problems.append(f"{it['id']}: evidence not verbatim in {src}: {it['evidence']!r}")
        nev, ntext = _norm(it["evidence"]), _norm(text)
        if not any(_norm(a) in nev or _norm(a) in ntext for a in it["answers"]):
            problems.append(f"{it['id']}: no accepted answer found in evidence or {src}")
    assert not problems, "\n".join(problems)


DEVSET_CHECK = HERE / "devsets" / "check.py"
DEVSET_ROOTS = [HERE.parent / "corpus", PYDOCS_DIR, HERE.parent.parent / "shared" / "data" / "phantom-dev" / "corpus",
                Path("/usr/share/doc/postfix/html")]


@pytest.mark.skipif(not all(p.is_dir() for p in DEVSET_ROOTS),
                    reason="a devset corpus is missing (python3.11-doc, postfix-doc, ../shared/data/phantom-dev)")
def test_devsets_are_well_formed_and_grounded():
    """tests/devsets/check.py: keys, kinds, ≥20% unanswerable, evidence found in the extracted
    text, answers in the evidence, no dev/test overlap, made-up names absent from the corpus."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(DEVSET_CHECK), "--pydocs", str(PYDOCS_DIR)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
