"""Text primitives, one definition each, shared by retrieval, the answerers, the LLM's citation
check and the front ends: what a word, a stem, a stop word, a sentence and a citation marker are.

Before these lived here, retrieval and the LLM's citation check each had their own stop words,
stemmer and sentence splitter, and so disagreed on what a word was.
"""
from __future__ import annotations

import re
from functools import lru_cache

import Stemmer  # PyStemmer: Snowball in C

WORD = re.compile(r"\w+", re.UNICODE)

# Between the cells of a table row, which the HTML loader keeps on one line and the answerer reads
# as one sentence ("tar -xvf foo.tar | extract files from the archive").
CELL_SEPARATOR = " | "

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves s t don doesn didn isn wasn aren weren won wouldn shouldn
couldn ll re ve d m o y tell say says said know please hi hey thanks thank ok okay whats wat pls
""".split())


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")  # made once: building it costs more than stemming a question


def stem_words(words: list[str]) -> list[str]:
    """Snowball (English) stems of lower-cased words."""
    return _stemmer().stemWords(words)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return WORD.findall(text.lower())


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, Snowball-stemmed word tokens (BM25, the answerers, the
    citation check)."""
    return stem_words([w for w in words(text) if w not in STOPWORDS])


_PROPER_PHRASE = re.compile(r"\b(?:[A-Z][a-z]+\s+){1,4}[A-Z][a-z]+\b")


def acronyms(text: str) -> list[str]:
    """'International Space Station' → 'iss': documents spell names out, people type acronyms."""
    return ["".join(w[0] for w in m.group(0).split()).lower() for m in _PROPER_PHRASE.finditer(text)]


def tokenize_document(text: str) -> list[str]:
    return tokenize(text) + acronyms(text)


def numbers(text: str) -> set[str]:
    """The tokens of `text` that hold a digit ("2024", "1st", "3x")."""
    return {w for w in words(text) if any(c.isdigit() for c in w)}


def one_line(text: str) -> str:
    """Runs of whitespace (newlines included) folded into single spaces."""
    return " ".join(text.split())


# --- citation markers ---------------------------------------------------------------------------

# One marker: "[1]" or "[1, 3]" (several passages). Answers carry them after the sentence they support.
CITATION_MARKER = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
# A run of markers with the space before them ("… 2024. [1][3]"); not "a[1]" or "m[1][2]" (code
# indexing) nor "`x [1]`".
_NOT_AFTER_CODE = r"(?<![\w\])`])"
MARKER_RUN = re.compile(_NOT_AFTER_CODE + r"(?:\s*" + CITATION_MARKER.pattern + r")+")
# Footnotes in source documents ("launched in 1998.[12]", "[3–5]"), which look like our markers.
FOOTNOTE = re.compile(_NOT_AFTER_CODE + r"(?:\[\d+(?:\s*[,;–-]\s*\d+)*\])+")


def marker_numbers(text: str) -> list[int]:
    """The passage numbers cited in `text`, in order, repeats included."""
    return [int(n) for m in MARKER_RUN.finditer(text) for n in re.findall(r"\d+", m.group())]


def tidy_spacing(text: str) -> str:
    """Spacing after markers were removed: no doubled spaces, no space before punctuation."""
    text = re.sub(r"(?<=\S) {2,}", " ", text.strip())
    return re.sub(r"\s+([.!?,;:])", r"\1", text)


def strip_markers(text: str) -> str:
    return tidy_spacing(MARKER_RUN.sub("", text))


# --- sentences ----------------------------------------------------------------------------------

# A sentence ends at . ! ? (and closing quotes/brackets) followed by space and a capital or a
# digit, at a blank line, before a list item, or after a heading line. "[n]" markers right after the stop belong to
# the sentence before them.
_SENTENCE_END = re.compile(
    r"(?<=[.!?。])[\"”’)\]]*(?P<markers>(?:\s*" + CITATION_MARKER.pattern + r")*)\s+(?=[\"“‘(\[]?[A-Z0-9])"
    r"|\n\s*\n|\n(?=\s*[-*•#]|\s*\d+[.)]\s)"
)
# A short line ending in a letter, followed by a capital on the next line, is a heading, not the
# start of the next sentence ("Postfix CDB Howto\nIntroduction\nCDB (Constant DataBase) is …",
# as HTML pages come out); wrapped prose lines are longer.
_HEADING_LINE = re.compile(r"^[^\n]{1,40}[^\W\d_]\n(?=[A-Z])", re.M)
_ABBREVIATIONS = frozenset({"e.g", "i.e", "mr", "mrs", "ms", "dr", "st", "vs", "approx", "no", "fig", "cf"})
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, surrounding space excluded, trailing citation
    markers included. "U.S.", "J. Smith" and "e.g." do not end a sentence; a heading line is a
    sentence of its own."""
    cuts = [m.end() for m in _HEADING_LINE.finditer(text)]
    if cuts:
        return [(a + s, a + e) for a, b in zip([0] + cuts, cuts + [len(text)])
                for s, e in _sentence_spans(text[a:b])]
    return _sentence_spans(text)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start:m.start()].rsplit(None, 1)
        last_word = before[-1].lower().strip("(\"'“‘").rstrip(".") if before else ""
        if text[m.start() - 1:m.start()] == "." and (_INITIALS.fullmatch(last_word) or last_word in _ABBREVIATIONS):
            continue
        end = m.end("markers") if m.group("markers") else m.start()
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        piece = text[s:e]
        lead = len(piece) - len(piece.lstrip())
        body = piece.strip()
        if body:
            out.append((s + lead, s + lead + len(body)))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (see `sentence_spans`)."""
    return [text[s:e] for s, e in sentence_spans(text)]
