#!/usr/bin/env python3
"""Regenerate tests/devsets/*_{dev,test}.jsonl from the hand-written question lists and phantom-dev facts.

    python3 tests/devsets/tools/build_devsets.py [--phantom-data DIR]
    python3 tests/devsets/check.py            # then validate

Split: items are first bundled into groups (same "fact group", or sharing an evidence span or a hop
span, so paraphrases of one fact never straddle dev and test); bundles are shuffled with a fixed
seed per corpus, ordered largest first, and each is dealt to the split that keeps the per-kind and
per-tag counts (and the sizes) of dev and test closest: a greedy stratification by kind and tags.
Deterministic: same inputs, same files.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
OUT = TOOLS.parent
sys.path.insert(0, str(TOOLS))

import data_iss  # noqa: E402
import data_postfix  # noqa: E402
import data_pydocs  # noqa: E402
import phantom_facts  # noqa: E402

SEED = 7


def _norm(s: str | None) -> str:
    return " ".join(re.findall(r"\w+", (s or "").lower()))


def iss_items():
    for group, q, answers, ev, kind, tags in data_iss.ITEMS:
        yield {"question": q, "answers": answers, "evidence": ev,
               "source": data_iss.SOURCE if ev else None, "kind": kind, "tags": tags, "group": group}


def table_items(module):
    for group, source, q, answers, ev, kind, tags in module.ITEMS:
        yield {"question": q, "answers": answers, "evidence": ev, "source": source, "kind": kind,
               "tags": tags, "group": group}


def split(items: list[dict], seed: str) -> tuple[list[dict], list[dict]]:
    # union-find over group names and evidence spans
    parent = list(range(len(items)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key: dict[str, int] = {}
    for i, it in enumerate(items):
        keys = [f"g:{it['group']}"]
        if it.get("evidence"):
            keys.append(f"e:{it['source']}:{_norm(it['evidence'])}")
        for hop in it.get("hops", []):
            keys.append(f"e:{hop['source']}:{_norm(hop['evidence'])}")
        for k in keys:
            if k in first_by_key:
                parent[find(i)] = find(first_by_key[k])
            else:
                first_by_key[k] = i
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[find(i)].append(i)

    def features(idx):
        c = Counter()
        for i in idx:
            c["kind:" + items[i]["kind"]] += 1
            for t in items[i]["tags"]:
                c["tag:" + t] += 1
            c["size"] += 1
        return c

    rng = random.Random(seed)
    bundles = sorted(groups.values())
    rng.shuffle(bundles)
    bundles.sort(key=len, reverse=True)  # big bundles first, singles even things out at the end
    dev, test = [], []
    tally = {"dev": Counter(), "test": Counter()}
    weights = lambda k: 4 if k == "size" else (2 if k.startswith("kind:") or k == "kind:unanswerable" else 1)

    def cost(d, t):
        keys = set(d) | set(t)
        return sum(weights(k) * abs(d[k] - t[k]) for k in keys)

    for b in bundles:
        f = features(b)
        c_dev = cost(tally["dev"] + f, tally["test"])
        c_test = cost(tally["dev"], tally["test"] + f)
        to_dev = c_dev < c_test or (c_dev == c_test and rng.random() < 0.5)
        (dev if to_dev else test).extend(b)
        tally["dev" if to_dev else "test"] += f
    return [items[i] for i in sorted(dev)], [items[i] for i in sorted(test)]


def write(name: str, split_name: str, items: list[dict]) -> Path:
    path = OUT / f"{name}_{split_name}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for n, it in enumerate(items, 1):
            rec = {"id": f"{name}-{split_name}-{n:03d}", "question": it["question"], "answers": it["answers"],
                   "evidence": it["evidence"], "source": it["source"], "kind": it["kind"],
                   "tags": sorted(set(it["tags"]))}
            if it.get("hops"):
                rec["hops"] = it["hops"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phantom-data", type=Path, default=phantom_facts.DEFAULT_DATA)
    args = ap.parse_args(argv)
    corpora = {
        "iss": list(iss_items()),
        "pydocs": list(table_items(data_pydocs)),
        "phantom": phantom_facts.build_items(args.phantom_data),
        "postfix": list(table_items(data_postfix)),
    }
    for name, items in corpora.items():
        dev, test = split(items, f"{name}-{SEED}")
        for split_name, part in (("dev", dev), ("test", test)):
            path = write(name, split_name, part)
            un = sum(it["kind"] == "unanswerable" for it in part)
            print(f"{path.relative_to(OUT.parent.parent)}: {len(part)} items, {un} unanswerable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
