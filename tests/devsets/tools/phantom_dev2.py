"""A second phantom-dev development set (tests/devsets/phantom_dev2.jsonl): one-hop questions in
wordings the first sets do not use ("what is X's job", "name X's mother", "X's pal?", "who are X's
daughters"), about people no other set asks about, plus unstated attributes and made-up people.
Written when the first dev split's one-hop questions were all answered; tuned on, like dev.

    python3 tests/devsets/tools/phantom_dev2.py     # rewrites tests/devsets/phantom_dev2.jsonl
"""
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phantom_facts import Facts, poss
F = Facts(Path(__file__).resolve().parents[4] / "shared" / "data" / "phantom-dev")
used = set()
for f in Path(__file__).resolve().parents[1].glob("phantom_*.jsonl"):
    if f.name == "phantom_dev2.jsonl":
        continue
    for line in f.open():
        used.add(json.loads(line)["source"])
rng = random.Random(7)
people = [p for p in F.people if F.file_of[p] not in used]
rng.shuffle(people)
W = {
 "job": ["what is {n}'s job", "{n} works as what?", "what's {p} occupation", "whats {n} do for work", "tell me {p} profession", "what job does {n} have", "{n} - job?", "what does {n} do professionally"],
 "hobby": ["what is {n}'s hobby", "{p} pastime?", "what does {n} enjoy doing", "any hobbies for {n}?", "how does {n} spend free time", "what is {n} into outside work"],
 "dob": ["when was {n} born", "{p} date of birth?", "what is {n}'s birthday", "birthdate of {n}", "which day was {n} born on"],
 "mother": ["who is {p} mother", "{p} mom?", "name {p} mother"],
 "father": ["who is {p} father", "who's {p} dad", "name {p} father"],
 "spouse": ["who is {n}'s spouse", "who did {n} marry", "{p} partner?"],
 "daughter": ["who are {p} daughters", "name {p} daughter", "does {n} have a daughter? who"],
 "son": ["who are {p} sons", "who is {p} son", "{n} son's name?"],
 "friend": ["who are {p} friends", "who is {n} friends with", "{p} pal?"],
 "sibling": ["who are {p} siblings", "does {n} have brothers or sisters"],
}
items = []
def add(q, answers, ev, src, kind, tags):
    items.append({"id": f"phantom-dev2-{len(items)+1:03d}", "question": q, "answers": answers, "evidence": ev,
                  "source": src, "kind": kind, "tags": tags})
i = 0
for p in people:
    if len(items) >= 48: break
    rel = list(W)[i % len(W)]; i += 1
    n = p if rng.random() < 0.3 else p.lower()
    q = rng.choice(W[rel]).format(n=n, p=poss(n))
    if rel in ("job", "hobby", "dob"):
        v = F.attr[p][rel]; ev = F.check_sentence(p, rel, v)
        add(q, [v], ev, F.file_of[p], "when" if rel == "dob" else "what", ["one_hop"])
        continue
    rels = {"spouse": ["husband", "wife"], "sibling": ["brother", "sister"]}.get(rel, [rel])
    found = [(r, v) for r in rels for v in sorted(F.rel(p, r))]
    if not found:
        i -= 1; continue
    r = found[0][0]
    try:
        ev = F.sentence(p, r)
    except KeyError:
        i -= 1; continue
    vals = [v for rr, v in found if rr == r]
    add(q, vals, ev, F.file_of[p], "who", ["one_hop"])
# unanswerable: unstated attributes and made-up people
un = ["what is {n}'s salary", "where did {n} go to school", "how tall is {n}", "when did {n} die", "what nationality is {n}",
      "what is {n}'s email address", "{p} favourite food?", "where does {n} live"]
for k, t in enumerate(un):
    p = people[60 + k]; n = p.lower()
    add(t.format(n=n, p=poss(n)), [], None, None, "unanswerable", ["unstated_attribute"])
firsts = sorted(F.first_names); lasts = sorted(F.surnames)
made = 0
while made < 8:
    name = f"{rng.choice(firsts)} {rng.choice(['quist','okonkwo','verhoeven','lindqvist','abernathy','castellano','duchamp','nakagawa'])}"
    if F.name_in_corpus(name): continue
    t = rng.choice(["what does {n} do for a living", "who is {p} mother", "when was {n} born", "{p} hobby?"])
    add(t.format(n=name, p=poss(name)), [], None, None, "unanswerable", ["made_up_name"]); made += 1
out = Path(__file__).resolve().parents[1] / "phantom_dev2.jsonl"
out.write_text("".join(json.dumps(x) + "\n" for x in items))
print(len(items), "items")
