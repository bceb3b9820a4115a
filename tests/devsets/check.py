#!/usr/bin/env python3
"""Validate the development/test question sets in tests/devsets/ (stdlib only; no `bot` import).

    python3 tests/devsets/check.py [--iss DIR] [--pydocs DIR] [--phantom DIR] [--postfix DIR] [-v]

Checks, for every *_dev.jsonl / *_dev2.jsonl / *_test.jsonl file:
  * each line is a JSON object with the required keys (id, question, answers, evidence, source, kind)
    and only known extra keys (tags, hops, lead_ok); valid kind and tags; ids unique across all files;
  * at least 20% unanswerable items per file; unanswerable items have answers [], evidence/source null;
  * evidence is 5-40 words and can be found, word by word (regex \\W+ between words, case-sensitive,
    as the evaluator does), in the text the bot extracts from its source: .txt after the '---' front
    matter, .rst(.txt) with inline roles rendered, .html/.htm as visible text;
  * at least one accepted answer occurs (case-insensitively) in the evidence span;
  * two_hop items carry "hops" (each hop located the same way; the last hop equals the top level);
  * no question copies a run of more than 4 consecutive words from its evidence;
  * no question is repeated, and no evidence span is used in both the dev and the test split;
  * made_up_name questions mention no real phantom-dev person, and every two-word name built from a
    real first name or surname in such a question appears nowhere in the phantom corpus.
Exit status 0 when everything passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent  # repo root = parent of tests/

DEFAULT_ROOTS = {
    "iss": REPO / "corpus",
    "pydocs": Path("/usr/share/doc/python3.11/html/_sources"),
    "phantom": (REPO.parent / "shared" / "data" / "phantom-dev" / "corpus"),
    "postfix": Path("/usr/share/doc/postfix/html"),
}
REQUIRED = {"id", "question", "answers", "evidence", "source", "kind"}
OPTIONAL = {"tags", "hops", "lead_ok"}
KINDS = {"when", "who", "how_many", "what", "why", "where", "yes_no", "unanswerable"}
TAGS = {"paraphrase", "chat", "typo", "other_words", "terse", "one_hop", "two_hop", "made_up_name",
        "unstated_attribute", "unrecorded_relation", "near_miss", "off_topic"}
MIN_UNANSWERABLE = 0.20
MAX_COPY_RUN = 4

# --- text extraction (mirrors the bot's loaders) -------------------------------------------------

_RST_ROLE = re.compile(r":[\w:+-]+:`(?:[^`<]*?<)?[~!]*([^`<>]+?)>?`")
_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`_{1,2}")


def clean_rst(text: str) -> str:
    text = _RST_ROLE.sub(lambda m: m.group(1), text)
    text = _RST_LINK.sub(lambda m: m.group(1), text)
    return _RST_LITERAL.sub(lambda m: m.group(1), text)


_HTML_SKIP = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
_HTML_BLOCK = {"p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "li", "ul", "ol",
               "table", "tr", "br", "hr", "pre", "blockquote", "dd", "dt", "dl", "figure", "figcaption",
               "h1", "h2", "h3", "h4", "h5", "h6", "title", "td", "th"}


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def _newline(self):
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag, attrs):
        if tag in _HTML_SKIP:
            self.skip += 1
        elif tag in _HTML_BLOCK:
            self._newline()

    def handle_startendtag(self, tag, attrs):
        if tag in _HTML_BLOCK:
            self._newline()

    def handle_endtag(self, tag):
        if tag in _HTML_SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _HTML_BLOCK:
            self._newline()

    def handle_data(self, data):
        if self.skip:
            return
        text = re.sub(r"\s+", " ", data)
        if text.strip() or (self.parts and not self.parts[-1].endswith((" ", "\n"))):
            if self.parts and self.parts[-1].endswith("\n"):
                text = text.lstrip()
            if text:
                self.parts.append(text)


def html_text(raw: str) -> str:
    p = _VisibleText()
    p.feed(raw)
    p.close()
    return "".join(p.parts)


def strip_front_matter(text: str) -> str:
    m = re.match(r"\A---\n(.*?)\n---\n", text, re.S)
    return text[m.end():] if m else text


def document_text(path: Path) -> str:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    name = path.name.lower()
    if name.endswith((".html", ".htm")):
        return html_text(raw)
    if name.endswith((".rst", ".rst.txt")):
        return clean_rst(raw)
    return strip_front_matter(raw)


def words(s: str) -> list[str]:
    return re.findall(r"\w+", s)


def locate(text: str, evidence: str) -> bool:
    if evidence in text:
        return True
    ws = words(evidence)
    return bool(ws) and re.search(r"\W+".join(map(re.escape, ws)), text) is not None


def copied_run(question: str, evidence: str) -> int:
    """Length of the longest run of consecutive words the question shares with the evidence."""
    q, e = [w.lower() for w in words(question)], [w.lower() for w in words(evidence)]
    best = 0
    prev = [0] * (len(e) + 1)
    for i in range(1, len(q) + 1):
        cur = [0] * (len(e) + 1)
        for j in range(1, len(e) + 1):
            if q[i - 1] == e[j - 1]:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


# --- checks --------------------------------------------------------------------------------------

class Checker:
    def __init__(self, roots: dict[str, Path], verbose: bool = False) -> None:
        self.roots = roots
        self.verbose = verbose
        self.errors: list[str] = []
        self._docs: dict[Path, str | None] = {}
        self._phantom = None

    def err(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    def doc(self, corpus: str, source: str) -> str | None:
        path = self.roots[corpus] / source
        if path not in self._docs:
            self._docs[path] = document_text(path) if path.is_file() else None
        return self._docs[path]

    def phantom_names(self):
        if self._phantom is None:
            root = self.roots["phantom"]
            people, texts = set(), []
            for p in sorted(root.glob("*.txt")):
                t = p.read_text(encoding="utf-8")
                texts.append(t.lower())
                people.add(t.splitlines()[0].lstrip("# ").strip().lower())
            self._phantom = (people, {n.split()[0] for n in people}, {n.split()[-1] for n in people},
                             "\n".join(texts))
        return self._phantom

    def check_span(self, where, corpus, source, evidence, label="evidence"):
        if not isinstance(source, str) or not source:
            self.err(where, f"{label}: source missing")
            return
        if not isinstance(evidence, str) or not evidence.strip():
            self.err(where, f"{label}: evidence missing")
            return
        n = len(words(evidence))
        if not 5 <= n <= 40:
            self.err(where, f"{label}: evidence has {n} words (want 5-40)")
        text = self.doc(corpus, source)
        if text is None:
            self.err(where, f"{label}: source file not found: {self.roots[corpus] / source}")
        elif not locate(text, evidence):
            self.err(where, f"{label}: evidence not found in {source}: {evidence!r}")

    def check_item(self, corpus: str, where: str, it: dict) -> None:
        missing = REQUIRED - set(it)
        if missing:
            self.err(where, f"missing keys {sorted(missing)}")
            return
        extra = set(it) - REQUIRED - OPTIONAL
        if extra:
            self.err(where, f"unknown keys {sorted(extra)}")
        if not isinstance(it["id"], str) or not it["id"]:
            self.err(where, "bad id")
        q = it["question"]
        if not isinstance(q, str) or not q.strip():
            self.err(where, "empty question")
            return
        if it["kind"] not in KINDS:
            self.err(where, f"bad kind {it['kind']!r}")
        tags = it.get("tags", [])
        if not isinstance(tags, list) or not set(tags) <= TAGS:
            self.err(where, f"bad tags {tags!r}")
            tags = []
        answers = it["answers"]
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            self.err(where, "answers must be a list of non-empty strings")
            return
        if it["kind"] == "unanswerable":
            if answers or it["evidence"] is not None or it["source"] is not None:
                self.err(where, "unanswerable items need answers [], evidence null, source null")
            if "hops" in it:
                self.err(where, "unanswerable item has hops")
        else:
            if not answers:
                self.err(where, "answerable item without answers")
            self.check_span(where, corpus, it["source"], it["evidence"])
            ev = it["evidence"] or ""
            if not any(a.lower() in ev.lower() for a in answers):
                self.err(where, f"no accepted answer occurs in the evidence: {answers!r}")
            spans = [ev]
            if "two_hop" in tags or "hops" in it:
                hops = it.get("hops")
                if not isinstance(hops, list) or len(hops) < 2:
                    self.err(where, "two_hop item needs a 'hops' list of >= 2 spans")
                else:
                    for k, hop in enumerate(hops):
                        if not isinstance(hop, dict) or set(hop) != {"source", "evidence"}:
                            self.err(where, f"hop {k}: needs exactly source and evidence")
                            continue
                        self.check_span(where, corpus, hop["source"], hop["evidence"], f"hop {k}")
                        spans.append(hop["evidence"])
                    last = hops[-1]
                    if isinstance(last, dict) and (last.get("source"), last.get("evidence")) != (it["source"], it["evidence"]):
                        self.err(where, "last hop must equal the top-level source/evidence")
            for span in spans:
                run = copied_run(q, span or "")
                if run > MAX_COPY_RUN:
                    self.err(where, f"question copies {run} consecutive words from its evidence")
        if "made_up_name" in tags:
            self.check_made_up(where, q)

    def check_made_up(self, where: str, question: str) -> None:
        if not self.roots["phantom"].is_dir():
            self.err(where, f"phantom corpus not found at {self.roots['phantom']}")
            return
        people, firsts, lasts, alltext = self.phantom_names()
        ql = " ".join(re.findall(r"[\w-]+", question.lower().replace("'s ", " ")))
        for name in people:
            if re.search(rf"\b{re.escape(name)}\b", ql):
                self.err(where, f"made-up name question mentions real person {name!r}")
        toks = re.findall(r"[a-z][\w-]*", ql)
        found = False
        for a, b in zip(toks, toks[1:]):
            if a in firsts or b in lasts:
                cand = f"{a} {b}"
                if cand in people:
                    continue
                if a in firsts and (b in lasts or b not in {"do", "does", "is", "was", "have", "has"}):
                    found = True
                if re.search(rf"\b{re.escape(cand)}\b", alltext):
                    self.err(where, f"name {cand!r} occurs in the phantom corpus")
        if self.verbose and not found:
            print(f"note {where}: made-up name shares no first name with the corpus")

    def check_file(self, corpus: str, path: Path) -> list[dict]:
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                it = json.loads(line)
            except json.JSONDecodeError as exc:
                self.err(where, f"invalid JSON ({exc.msg})")
                continue
            if not isinstance(it, dict):
                self.err(where, "not a JSON object")
                continue
            self.check_item(corpus, f"{where} [{it.get('id')}]", it)
            items.append(it)
        if not items:
            self.err(path.name, "no items")
            return items
        un = sum(it.get("kind") == "unanswerable" for it in items)
        if un / len(items) < MIN_UNANSWERABLE:
            self.err(path.name, f"only {un}/{len(items)} unanswerable (< {MIN_UNANSWERABLE:.0%})")
        return items


def _norm_q(s: str) -> str:
    return " ".join(words(s.lower()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in DEFAULT_ROOTS.items():
        ap.add_argument(f"--{name}", type=Path, default=default, help=f"corpus root (default: {default})")
    ap.add_argument("--dir", type=Path, default=HERE, help="folder holding the jsonl files")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    roots = {name: getattr(args, name) for name in DEFAULT_ROOTS}
    ck = Checker(roots, args.verbose)

    all_ids: dict[str, str] = {}
    questions: dict[str, str] = {}
    total = files = 0
    for corpus in DEFAULT_ROOTS:
        split_items = {}
        for split in ("dev", "dev2", "test"):
            path = args.dir / f"{corpus}_{split}.jsonl"
            if not path.is_file():
                if split != "dev2":  # a second dev file is optional (phantom has one)
                    ck.err(path.name, "file missing")
                continue
            items = ck.check_file(corpus, path)
            files += 1
            split_items.setdefault("test" if split == "test" else "dev", []).extend(items)
            total += len(items)
            for it in items:
                i = it.get("id")
                if i in all_ids:
                    ck.err(path.name, f"duplicate id {i!r} (also in {all_ids[i]})")
                all_ids[i] = path.name
                q = _norm_q(str(it.get("question", "")))
                if q in questions:
                    ck.err(path.name, f"duplicate question {it.get('question')!r} (also in {questions[q]})")
                questions[q] = path.name
            un = sum(it.get("kind") == "unanswerable" for it in items)
            print(f"{path.name}: {len(items)} items, {un} unanswerable ({un / max(1, len(items)):.0%})")
        if len(split_items) == 2:
            def spans(items):
                out = set()
                for it in items:
                    for s, e in [(it.get("source"), it.get("evidence"))] + [
                            (h.get("source"), h.get("evidence")) for h in it.get("hops", []) if isinstance(h, dict)]:
                        if e:
                            out.add((s, _norm_q(e)))
                return out
            shared = spans(split_items["dev"]) & spans(split_items["test"])
            for s, e in sorted(shared):
                ck.err(f"{corpus}", f"evidence span used in both dev and test: {s}: {e[:60]!r}")
    if ck.errors:
        print(f"\n{len(ck.errors)} problem(s):")
        for e in ck.errors:
            print("  " + e)
        return 1
    print(f"\nOK: {total} items in {files} files pass all checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
