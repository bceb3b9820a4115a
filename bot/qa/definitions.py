"""Where documentation defines a name: the line that introduces a function, class, option or
setting, with its description under it.

Reference documentation states most facts under such a line: a reST object directive
(`.. function:: uuid4()`), a signature line as HTML renders it (`json.dumps(obj, *, indent=None)`),
or a setting with its default (`message_size_limit (default: 10240000)`). A question that names
the identifier (`json.dumps`, `functools.cache`) is most often about that description, so the
retriever ranks the chunks that define it as a third list (measured in the README's ablation),
and the extractive answerer keeps the defined name with the sentence under it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from bot.qa.entities import _IDENTIFIER
from bot.schema import Chunk

# A reST object description: the block indented under it describes the name it gives.
DIRECTIVE = re.compile(r"^\s*\.\. (?:[a-z]+:)?(?:function|method|class|attribute|data|exception|decorator"
                       r"|decoratormethod|classmethod|staticmethod|abstractmethod|coroutinefunction"
                       r"|coroutinemethod|awaitablefunction|module|envvar|option|cmdoption|describe|opcode"
                       r"|pdbcommand|type|macro|member|var|program)::\s+(\S.*?)\s*$")
# A line that is a directive, a (dotted) name with its whole signature and nothing after it (as
# HTML renders a definition; a call in a code example goes on: "run(..., check=True).stdout"), or
# a setting with its default.
_DEFINING_LINE = re.compile(r"^(?:[ \t]*\.\. (?:[a-z]+:)?[a-z]+::[ \t]+(?:[A-Za-z_]\w*\.)*(?P<directed>[A-Za-z_]\w*)"
                            r"|(?:[A-Za-z_]\w*\.)*(?P<signed>[A-Za-z_]\w*)\(.*\)[ \t]*(?:(?:->|→)[^\n]*)?¶?[ \t]*$"
                            r"|(?P<setting>[A-Za-z_]\w*) \(default)", re.M)
MAX_DEFINING_LINE = 120  # longer lines are prose that happens to start with a name
MAX_DEFINITIONS = 10  # per name asked: a name defined in many places says little on its own


def _identifier_parts(question: str) -> list[list[str]]:
    """The dotted parts of each identifier the question names, lower-cased: `statistics.mode()` →
    ["statistics", "mode"]."""
    found = ([p.lower() for p in identifier.rstrip("()").split(".") if p]
             for identifier in _IDENTIFIER.findall(question))
    return [parts for parts in found if parts]


def identifier_names(question: str) -> set[str]:
    """The last parts of the identifiers a question names (`statistics.mode()` → mode)."""
    return {parts[-1] for parts in _identifier_parts(question)}


def defined_name(term: str) -> str:
    """The name a definition line gives, lower-cased: `Counter.most_common([n])` → most_common."""
    head = re.split(r"[\s(\[]", term.strip(), maxsplit=1)[0]
    return head.rsplit(".", 1)[-1].lower()


class Definitions:
    """Name (lower-cased) → the chunks with a line defining it, built from the chunks once."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self.by_name: dict[str, list[Chunk]] = {}
        for chunk in chunks:
            for m in _DEFINING_LINE.finditer(chunk.text):
                end = chunk.text.find("\n", m.start())
                line = chunk.text[m.start():end if end >= 0 else len(chunk.text)]
                if len(line.strip()) > MAX_DEFINING_LINE:
                    continue
                name = m.group("directed") or m.group("signed") or m.group("setting")
                self.by_name.setdefault(name.lower(), []).append(chunk)

    def to_json(self) -> dict[str, list[str]]:
        """Name → the ids of its defining chunks, in order (what the BM25 cache keeps)."""
        return {name: [c.id for c in found] for name, found in self.by_name.items()}

    @classmethod
    def from_json(cls, data: dict[str, list[str]], chunks: Iterable[Chunk]) -> "Definitions":
        """The definitions `to_json` gave, over `chunks`; KeyError if an id is not among them."""
        by_id = {c.id: c for c in chunks}
        self = cls.__new__(cls)
        self.by_name = {name: [by_id[i] for i in ids] for name, ids in data.items()}
        return self

    def ranking(self, question: str, order: dict[str, float]) -> list[Chunk]:
        """The chunks defining the identifiers the question names, those whose source or text
        also holds the identifier's qualifier (`functools` of `functools.cache`) first, each group
        by `order` (the fused score), at most MAX_DEFINITIONS a name."""
        ranked: dict[str, Chunk] = {}
        for parts in _identifier_parts(question):
            found = self.by_name.get(parts[-1], [])
            if len(parts) > 1:
                qualifier = parts[0]
                found = [c for c in found if qualifier in c.source.lower() or qualifier in c.text.lower()] or found
            found = sorted(found, key=lambda c: -order.get(c.id, 0.0))[:MAX_DEFINITIONS]
            for chunk in found:
                ranked.setdefault(chunk.id, chunk)
        return list(ranked.values())
