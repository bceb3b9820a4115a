#!/usr/bin/env python3
"""Derive development questions for the phantom-dev corpus from its Prolog facts and articles.

Reads only the phantom-dev data folder: by default ``../shared/data/phantom-dev`` relative to the
repository root (the repo root is the parent of ``tests/``), or an absolute path given with
``--data``. Stdlib only; no Prolog needed: the few rules used (married = two parents of a shared
child, sibling = shares a parent, friend = friend_/2 in either direction) are re-implemented here
and every derived fact is cross-checked against the sentence in the person's article, which is
what the gold "evidence" quotes.

    python3 tests/devsets/tools/phantom_facts.py            # print the generated items (JSON Lines)
    python3 tests/devsets/tools/phantom_facts.py --stats    # counts only

``build_items(data_dir)`` is what tests/devsets/tools/build_devsets.py imports.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "phantom-dev"
SEED = 20240611

_FACT = re.compile(r'^(parent|dob|job|hobby|gender|friend_)\("([^"]+)",\s*"([^"]+)"\)\.\s*$')


class Facts:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.corpus = self.data_dir / "corpus"
        self.parents: dict[str, set[str]] = defaultdict(set)  # child -> parents
        self.children: dict[str, set[str]] = defaultdict(set)
        self.attr: dict[str, dict[str, str]] = defaultdict(dict)  # person -> {dob, job, hobby, gender}
        self.friends: dict[str, set[str]] = defaultdict(set)
        for line in (self.data_dir / "facts.pl").read_text(encoding="utf-8").splitlines():
            m = _FACT.match(line)
            if not m:
                continue
            pred, a, b = m.groups()
            if pred == "parent":  # parent(Child, Parent)
                self.parents[a].add(b)
                self.children[b].add(a)
            elif pred == "friend_":
                self.friends[a].add(b)
                self.friends[b].add(a)
            else:
                self.attr[a][pred] = b
        self.people = sorted(self.attr)
        self.spouses: dict[str, set[str]] = defaultdict(set)
        for child, ps in self.parents.items():
            for p in ps:
                self.spouses[p] |= ps - {p}
        # articles: person -> (file name, text, sentences)
        self.file_of: dict[str, str] = {}
        self.text_of: dict[str, str] = {}
        for path in sorted(self.corpus.glob("*.txt")):
            text = path.read_text(encoding="utf-8")
            title = text.splitlines()[0].lstrip("# ").strip()
            self.file_of[title] = path.name
            self.text_of[title] = text
        missing = set(self.people) - set(self.file_of)
        assert not missing, f"people without an article: {sorted(missing)[:5]}"
        self.first_names = {p.split()[0].lower() for p in self.people}
        self.surnames = {p.split()[-1].lower() for p in self.people}
        self._all_text = "\n".join(self.text_of.values()).lower()

    # --- relations --------------------------------------------------------------------------
    def gender(self, p: str) -> str:
        return self.attr[p]["gender"]

    def siblings(self, p: str) -> set[str]:
        out = set()
        for par in self.parents.get(p, ()):
            out |= self.children[par]
        return out - {p}

    def rel(self, p: str, name: str) -> set[str]:
        """People in relation `name` to p, as the article words it (wife, mother, brother, ...)."""
        g = {"male": "male", "female": "female"}
        by_gender = lambda people, gend: {x for x in people if self.gender(x) == gend}
        table = {
            "husband": lambda: by_gender(self.spouses[p], "male"),
            "wife": lambda: by_gender(self.spouses[p], "female"),
            "mother": lambda: by_gender(self.parents.get(p, set()), "female"),
            "father": lambda: by_gender(self.parents.get(p, set()), "male"),
            "son": lambda: by_gender(self.children.get(p, set()), "male"),
            "daughter": lambda: by_gender(self.children.get(p, set()), "female"),
            "brother": lambda: by_gender(self.siblings(p), "male"),
            "sister": lambda: by_gender(self.siblings(p), "female"),
            "friend": lambda: set(self.friends.get(p, set())),
            "spouse": lambda: set(self.spouses[p]),
            "parent": lambda: set(self.parents.get(p, set())),
        }
        del g
        return table[name]()

    # --- article sentences ------------------------------------------------------------------
    def sentence(self, p: str, relation: str) -> str:
        """The article line stating `relation` of p (singular or plural form)."""
        text = self.text_of[p]
        if relation in ("dob", "job", "hobby", "gender"):
            label = {"dob": "date of birth", "job": "occupation", "hobby": "hobby", "gender": "gender"}[relation]
            pat = rf"^The {label} of {re.escape(p)} is .+\.$"
        else:
            plural = {"wife": "wives", "friend": "friends"}.get(relation, relation + "s")
            pat = rf"^The (?:{relation}|{plural}) of {re.escape(p)} (?:is|are) .+\.$"
        m = re.search(pat, text, re.M)
        if not m:
            raise KeyError(f"{p}: no sentence for {relation}")
        return m.group(0)

    def check_sentence(self, p: str, relation: str, value: str) -> str:
        s = self.sentence(p, relation)
        assert value in s, (p, relation, value, s)
        return s

    def name_in_corpus(self, name: str) -> bool:
        return name.lower() in self._all_text


# --- question wording -------------------------------------------------------------------------

def lc(name: str, rng: random.Random) -> str:
    """People type names in lower case more often than not."""
    return name if rng.random() < 0.3 else name.lower()


def poss(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


ONE_HOP = {
    "job": [
        ("what does {n} do for a job", ["other_words"]),
        ("{n}'s profession?", ["terse", "other_words"]),
        ("hey what kind of work does {n} do", ["chat", "other_words"]),
        ("what is {n} employed as", ["other_words"]),
        ("wht does {n} do for a livng", ["typo", "other_words"]),
        ("{n} - what's their line of work?", ["other_words"]),
        ("whats {n}s ocupation", ["typo", "terse"]),
        ("quick q: how does {n} earn a living", ["chat", "other_words"]),
        ("what job has {n} got", ["paraphrase"]),
    ],
    "hobby": [
        ("what does {n} do for fun", ["other_words"]),
        ("{n} hobby?", ["terse"]),
        ("what's {n} into in their free time", ["other_words", "chat"]),
        ("any idea what {n} likes doing as a pastime?", ["chat", "other_words"]),
        ("wat hobby does {n} have", ["typo"]),
        ("how does {n} spend spare time", ["other_words"]),
        ("{n}s favourite pasttime?", ["typo", "other_words", "terse"]),
    ],
    "dob": [
        ("when was {n} born", ["paraphrase"]),
        ("{n} birthday?", ["terse", "other_words"]),
        ("what's {n}'s dob", ["terse"]),
        ("when's {n}'s bday", ["chat", "other_words"]),
        ("wen was {n} born?", ["typo"]),
        ("on what day did {n} come into the world", ["other_words"]),
    ],
    "husband": [
        ("who is {n} married to", ["other_words"]),
        ("who's {n}'s hubby", ["chat", "other_words"]),
        ("{n} husband?", ["terse"]),
    ],
    "wife": [
        ("who is {n} married to?", ["other_words"]),
        ("{n}'s wife's name?", ["terse"]),
        ("whos {n} maried to", ["typo"]),
        ("who did {n} marry", ["other_words"]),
    ],
    "mother": [
        ("who's {n}'s mom", ["chat", "other_words"]),
        ("who is the mum of {n}?", ["other_words"]),
        ("{n} mothers name??", ["terse", "typo"]),
        ("name of {n}'s mother?", ["terse"]),
    ],
    "father": [
        ("who is {n}'s dad", ["other_words"]),
        ("who fathered {n}", ["other_words"]),
        ("{n} father??", ["terse", "chat"]),
    ],
    "son": [
        ("does {n} have a son? who", ["paraphrase"]),
        ("what's the name of {n}'s boy", ["other_words"]),
    ],
    "daughter": [
        ("who is {n}'s daughter", ["paraphrase"]),
        ("{n}'s daugther?", ["typo", "terse"]),
    ],
    "brother": [
        ("who's {n}'s brother", ["paraphrase"]),
        ("does {n} have a bro? whats his name", ["chat", "other_words"]),
    ],
    "sister": [
        ("who is {n}'s sis", ["chat", "other_words"]),
        ("name {n}'s sister pls", ["chat"]),
    ],
    "friend": [
        ("who is {n} friends with", ["paraphrase"]),
        ("who's {n}'s pal", ["other_words", "chat"]),
        ("{n} best buddy?", ["other_words", "terse"]),
    ],
}

KIND = {"job": "what", "hobby": "what", "dob": "when"}

# two-hop: (first relation, second relation or attribute, templates)
TWO_HOP = [
    ("husband", "mother", [("who is the mother of {n}'s husband?", ["paraphrase"]),
                           ("{n}'s husband's mom?", ["terse", "chat"])]),
    ("wife", "mother", [("who's the mother-in-law of {n}, i.e. his wife's mum", ["other_words", "chat"]),
                        ("who is {n}'s wife's mothr", ["typo"])]),
    ("wife", "job", [("what's the job of {n}'s wife?", ["paraphrase"]),
                     ("what does {n}'s wife do for work", ["other_words"])]),
    ("husband", "job", [("what does {n}'s husband do for a living", ["other_words"]),
                        ("{n}'s husband - what's his job?", ["terse"])]),
    ("friend", "hobby", [("what hobby does {n}'s friend have?", ["paraphrase"]),
                         ("{n}'s freind, what do they do for fun?", ["typo", "other_words"])]),
    ("friend", "job", [("what does {n}'s friend work as", ["other_words"]),
                       ("job of {n}'s pal?", ["terse", "other_words"])]),
    ("father", "dob", [("when was {n}'s dad born", ["other_words"]),
                       ("{n}'s father's birthday?", ["terse", "other_words"])]),
    ("mother", "hobby", [("whats {n}'s mom's hobbie", ["typo", "chat"]),
                         ("what does {n}'s mother like doing in her spare time", ["other_words"])]),
    ("father", "father", [("who is {n}'s grandpa on the dad's side", ["other_words", "chat"]),
                          ("who's {n}'s father's father", ["paraphrase"])]),
    ("mother", "mother", [("{n}'s mum - who is her mother?", ["other_words"]),
                          ("{n}'s maternal grandmother?", ["terse", "other_words"])]),
    ("brother", "job", [("what does {n}'s brother do for a living", ["other_words"]),
                        ("whats the job of {n}'s bro", ["chat", "other_words"])]),
    ("sister", "hobby", [("what's {n}'s sister's hobby", ["paraphrase"]),
                         ("hobby of {n}'s sis?", ["terse", "chat"])]),
    ("son", "dob", [("when was {n}'s son born?", ["paraphrase"]),
                    ("birthday of {n}'s boy?", ["terse", "other_words"])]),
    ("daughter", "job", [("what does {n}'s daugher do", ["typo"]),
                         ("{n}'s daughter's job?", ["terse"])]),
]


# (a) made-up people. Each shares a first name or a surname with a real person (or neither).
MADE_UP = [
    ("Abdul Kowalski", "what does abdul kowalski do for work"),
    ("Laura Pemberton", "when was laura pemberton born?"),
    ("Marguerite Felker", "who is marguerite felker married to"),
    ("Clint Oyelaran", "hey who's clint oyelaran's mom"),
    ("Tobias Barbee", "tobias barbee hobby?"),
    ("Jenni Halvorsen", "what job does jenni halvorsen have"),
    ("Desmond Lance", "who is desmond lance's father"),
    ("Oksana Mauro", "whats oksana mauro's brithday"),
    ("Bartholomew Quist", "what does bartholomew quist do for fun"),
    ("Elwood Castellanos", "who are elwood castellanos's friends"),
    ("Priya Knapp", "when was priya knapp bron"),
    ("Angelina Vasquez-Reed", "does angelina vasquez-reed have kids?"),
    ("Heather Ostrowski", "who's heather ostrowski's brother"),
    ("Rufus Bowie", "what is rufus bowie's ocupation"),
]

# (b) attributes no article states
UNSTATED = [
    ("what's {n}'s favourite food", []),
    ("how much does {n} earn a year", ["other_words"]),
    ("how tall is {n}", []),
    ("where does {n} live? need the adress", ["typo", "chat"]),
    ("where was {n} born", []),
    ("what's {n}'s email address", []),
    ("what is {n}'s blod type", ["typo"]),
    ("when did {n} die", []),
    ("which school did {n} go to", []),
    ("what nationality is {n}", []),
    ("what salary does {n} get paid at work", []),
    ("what's {n}'s favorite colour", ["terse"]),
]


def build_items(data_dir: Path | str = DEFAULT_DATA, seed: int = SEED) -> list[dict]:
    f = Facts(Path(data_dir))
    rng = random.Random(seed)
    people = list(f.people)
    rng.shuffle(people)
    items: list[dict] = []
    used_subjects: set[str] = set()

    def add(question, answers, evidence, source, kind, tags, group, hops=None):
        it = {"question": question, "answers": answers, "evidence": evidence, "source": source,
              "kind": kind, "tags": sorted(set(tags)), "group": group}
        if hops:
            it["hops"] = hops
        items.append(it)

    def answers_for(value: str) -> list[str]:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return [value]
        return [value]

    # --- one-hop ---
    quota = {"job": 9, "hobby": 7, "dob": 7, "husband": 2, "wife": 2, "mother": 2, "father": 2,
             "son": 1, "daughter": 1, "brother": 1, "sister": 1, "friend": 2}
    pool = iter(people)
    for relation, n in quota.items():
        templates = ONE_HOP[relation]
        made = 0
        while made < n:
            p = next(pool)
            if p in used_subjects:
                continue
            if relation in KIND:
                value = f.attr[p][relation]
            else:
                vals = f.rel(p, relation)
                if len(vals) != 1:
                    continue
                value = next(iter(vals))
            ev = f.check_sentence(p, relation, value)
            q_tmpl, tags = templates[made % len(templates)]
            add(q_tmpl.format(n=lc(p, rng)), [value],
                ev, f.file_of[p], KIND.get(relation, "who"), tags + ["one_hop"], f"phantom:{p}")
            used_subjects.add(p)
            made += 1

    # --- two-hop ---
    for rel1, rel2, templates in TWO_HOP:
        made = 0
        for p in people:
            if made == 2:
                break
            if p in used_subjects:
                continue
            mids = f.rel(p, rel1)
            if len(mids) != 1:
                continue
            mid = next(iter(mids))
            # the first hop must be stated in p's article in singular form ("The friend of p is mid.")
            try:
                s1 = f.check_sentence(p, rel1, mid)
            except KeyError:
                continue
            if f" are " in s1.split(" of ", 1)[1]:
                continue
            if rel2 in KIND:
                value = f.attr[mid][rel2]
                kind = KIND[rel2]
                ans = [value]
            else:
                vals = f.rel(mid, rel2)
                if len(vals) != 1:
                    continue
                value = next(iter(vals))
                kind = "who"
                ans = [value]
            s2 = f.check_sentence(mid, rel2, value)
            tmpl, tags = templates[made % len(templates)]
            tags = ["two_hop"] + tags
            add(tmpl.format(n=lc(p, rng)), ans, s2, f.file_of[mid], kind, tags, f"phantom:{p}",
                hops=[{"source": f.file_of[p], "evidence": s1}, {"source": f.file_of[mid], "evidence": s2}])
            used_subjects.add(p)
            made += 1

    # --- unanswerable (a): made-up people ---
    for name, q in MADE_UP:
        assert not f.name_in_corpus(name), f"{name} occurs in the corpus"
        first, last = name.lower().split()[0], name.lower().split()[-1]
        tags = ["made_up_name"] + (["typo"] if name in ("Oksana Mauro", "Rufus Bowie", "Priya Knapp") else [])
        if first in f.first_names or last in f.surnames:
            tags.append("near_miss")
        add(q, [], None, None, "unanswerable", tags, f"phantom-fake:{name}")

    # --- unanswerable (b): attributes no article states ---
    for tmpl, extra in UNSTATED:
        p = next(x for x in people if x not in used_subjects)
        used_subjects.add(p)
        add(tmpl.format(n=lc(p, rng)), [], None, None, "unanswerable", ["unstated_attribute", "near_miss"] + extra,
            f"phantom:{p}")

    # --- unanswerable (c): relations the facts do not record ---
    def unrecorded(pred, tmpl, count, absent=(), extra=()):
        made = 0
        for p in people:
            if made == count:
                return
            if p in used_subjects or not pred(p):
                continue
            for rel in absent:
                try:
                    f.sentence(p, rel)
                except KeyError:
                    continue
                raise AssertionError(f"{p}: article states {rel}")
            used_subjects.add(p)
            add(tmpl.format(n=lc(p, rng)), [], None, None,
                "unanswerable", ["unrecorded_relation", "near_miss", *extra], f"phantom:{p}")
            made += 1

    no_spouse = lambda p: not f.spouses[p]
    no_parents = lambda p: not f.parents.get(p)
    no_grandparents = lambda p: all(not f.parents.get(x) for x in f.parents.get(p, ()))
    no_children = lambda p: not f.children.get(p)
    no_friends = lambda p: not f.friends.get(p)
    no_siblings = lambda p: not f.siblings(p)
    unrecorded(no_spouse, "who is {n} married to", 2, absent=("husband", "wife"))
    unrecorded(lambda p: no_spouse(p) and f.gender(p) == "male", "whats the name of {n}'s wife", 1,
               absent=("wife",))
    unrecorded(no_parents, "who are {n}'s parents", 1, absent=("mother", "father"))
    unrecorded(no_parents, "who's {n}'s dad", 1, absent=("father",))
    unrecorded(lambda p: no_grandparents(p) and not no_parents(p), "who is {n}'s grandmother", 2)
    unrecorded(no_children, "what's the name of {n}'s son", 1, absent=("son", "daughter"))
    unrecorded(no_friends, "who are {n}'s friends?", 1, absent=("friend",))
    unrecorded(no_friends, "who does {n} hang out with, any frends?", 1, absent=("friend",), extra=("typo",))
    unrecorded(no_siblings, "who is {n}'s sister", 1, absent=("sister", "brother"))
    return items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="phantom-dev folder (facts.pl, corpus/)")
    ap.add_argument("--stats", action="store_true")
    args = ap.parse_args(argv)
    items = build_items(args.data)
    if args.stats:
        from collections import Counter
        print(len(items), Counter(i["kind"] for i in items), Counter(t for i in items for t in i["tags"]))
    else:
        for it in items:
            print(json.dumps(it, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
