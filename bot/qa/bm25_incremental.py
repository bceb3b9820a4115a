"""Step 4, retrieve: the BM25 side for an index on a Chroma server, updated file by file.

bm25s builds its index in one go, so after any change every chunk is tokenized and scored again:
at 20k synthetic chunks that was 26 s of a 32 s bot start-up after a one-file ingest, while
fetching the texts over HTTP was the small part (benchmarks/scale.py, under load). Here the
index is kept as term counts (a sparse chunks × terms matrix), the corpus statistics BM25 needs
(document frequencies, lengths) follow from them, and the proper-noun lexicon from counters:
an update drops the rows of the changed files and tokenizes only their new chunks.

Scores are bm25s's default (Lucene: k1 1.5, b 0.75, idf log(1 + (N - df + 0.5) / (df + 0.5)),
a repeated query word counted again), computed at query time from the term columns; the tests
check they equal bm25s's. The cache is the bot machine's own (see retrieve.py), written whole
into a new folder that replaces the old one, so a reader sees one or the other.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

from bot.qa.entities import _CAPITALISED, _NAME_PAIR, PROPER_SHARE, ProperNouns
from bot.schema import Chunk
from bot.text import STOPWORDS, WORD, tokenize, tokenize_document

K1, B = 1.5, 0.75  # bm25s's defaults


def cached_chunk(fields: dict) -> Chunk:
    """A chunk read back from a cache's JSON line; its headings and pages come back as lists."""
    for key in ("headings", "pages"):
        fields[key] = tuple(tuple(pair) for pair in fields.get(key, ()))
    return Chunk(**fields)


def _indexed_text(c: Chunk) -> str:
    return c.text + "\n" + (c.section or "") + "\n" + c.title  # as BM25Index tokenizes a chunk



def top_scored(chunks: list[Chunk], scores: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
    """The k best-scoring chunks with their scores, best first; none that scores 0."""
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top])]
    return [(chunks[i], float(scores[i])) for i in top if scores[i] > 0]


def write_cache(directory: Path, chunks: list[Chunk], generation, fill) -> None:
    """A BM25 cache folder written whole: the chunks as JSON lines, the generation, and what
    `fill(folder)` adds; then swapped in, so readers see the old cache or the new one, never half."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps(c.__dict__, ensure_ascii=False) + "\n")
    fill(tmp)
    (tmp / "generation.json").write_text(json.dumps(generation))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)

class _NounCounts:
    """The counts ProperNouns.from_texts derives its lexicon from, kept so chunks can be
    subtracted as well as added."""

    def __init__(self) -> None:
        self.uses: Counter[str] = Counter()
        self.capitalised: Counter[str] = Counter()
        self.first: Counter[str] = Counter()
        self.last: Counter[str] = Counter()

    def add(self, chunks: list[Chunk], sign: int = 1) -> None:
        for c in chunks:
            text = f"{c.title}\n{c.section or ''}\n{c.text}"
            for counter, words in ((self.uses, WORD.findall(text)), (self.capitalised, _CAPITALISED.findall(text))):
                for w in words:
                    counter[w.lower()] += sign
            for a, b in _NAME_PAIR.findall(text):
                self.first[a.lower()] += sign
                self.last[b.lower()] += sign

    def nouns(self) -> ProperNouns:
        uses = {w for w, n in self.uses.items() if n > 0}
        proper = {w for w, n in self.capitalised.items()
                  if n > 0 and w not in STOPWORDS and n >= PROPER_SHARE * self.uses[w]}
        return ProperNouns(proper, uses, (w for w, n in self.first.items() if n > 0),
                           (w for w, n in self.last.items() if n > 0))

    def to_json(self) -> dict:
        return {k: {w: n for w, n in getattr(self, k).items() if n > 0} for k in ("uses", "capitalised", "first", "last")}

    @classmethod
    def from_json(cls, data: dict) -> "_NounCounts":
        self = cls()
        for key in ("uses", "capitalised", "first", "last"):
            setattr(self, key, Counter(data[key]))
        return self


class IncrementalBM25:
    """The BM25Index interface (chunks, search, idf, nouns, sources) over term counts that an
    update changes per file. `sources`: each file's hash, as the server's manifest had it."""

    def __init__(self, chunks: list[Chunk], sources: dict[str, str] | None = None) -> None:
        self.chunks: list[Chunk] = []
        self.sources = dict(sources or {})
        self.generation = None
        self.vocab: dict[str, int] = {}
        self.columns = sparse.csc_matrix((0, 0), dtype=np.float32)  # chunks × terms, by term
        self.noun_counts = _NounCounts()
        self.update(set(), chunks, self.sources)

    def update(self, drop: set[str], added: list[Chunk], sources: dict[str, str]) -> None:
        """Drop every chunk of the sources in `drop`, add `added`, and remember `sources`."""
        # Only the by-term layout is kept (queries read term columns): a second, by-chunk copy
        # would double the memory, and an update is rare next to a query.
        counts = self.columns.tocsr()
        keep = [i for i, c in enumerate(self.chunks) if c.source not in drop]
        if len(keep) < len(self.chunks):
            gone = set(range(len(self.chunks))) - set(keep)
            self.noun_counts.add([self.chunks[i] for i in sorted(gone)], sign=-1)
            counts = counts[keep]
            self.chunks = [self.chunks[i] for i in keep]
        indptr, indices, data = [0], [], []
        for c in added:
            for term, n in Counter(tokenize_document(_indexed_text(c))).items():
                indices.append(self.vocab.setdefault(term, len(self.vocab)))
                data.append(n)
            indptr.append(len(indices))
        new = sparse.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int32),
                                 np.asarray(indptr, np.int32)), shape=(len(added), len(self.vocab)))
        counts.resize((counts.shape[0], len(self.vocab)))
        self.columns = sparse.vstack([counts, new], format="csc")
        self.chunks += added
        self.noun_counts.add(added)
        self.sources = dict(sources)
        self._derive()

    def _derive(self) -> None:
        """What queries need besides the term columns: chunk lengths, document frequencies."""
        lengths = np.bincount(self.columns.indices, weights=self.columns.data, minlength=self.columns.shape[0])
        self.norm = K1 * ((1 - B) + B * lengths / max(lengths.mean(), 1e-9)) if len(lengths) else lengths
        self.df = np.diff(self.columns.indptr)
        self.nouns = self.noun_counts.nouns()

    def has_term(self, term: str) -> bool:
        col = self.vocab.get(term)
        return col is not None and int(self.df[col]) > 0

    def idf(self, term: str) -> float:
        """Inverse document frequency as BM25Index.idf: a term the corpus never uses counts as rarest."""
        col = self.vocab.get(term)
        df = int(self.df[col]) if col is not None else 0
        return float(np.log((max(len(self.chunks), 1) + 1) / (df + 0.5)))

    def search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        n = len(self.chunks)
        terms = [self.vocab[t] for t in tokenize(query) if t in self.vocab and self.df[self.vocab[t]] > 0]
        if not terms or not n:
            return []
        scores = np.zeros(n, np.float32)
        for col in terms:
            lo, hi = self.columns.indptr[col], self.columns.indptr[col + 1]
            rows, tf = self.columns.indices[lo:hi], self.columns.data[lo:hi]
            df = hi - lo
            scores[rows] += np.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (self.norm[rows] + tf)
        return top_scored(self.chunks, scores, k)

    def save(self, directory: Path, generation) -> None:
        def fill(tmp: Path) -> None:
            sparse.save_npz(tmp / "counts.npz", self.columns, compressed=False)
            (tmp / "vocab.json").write_text(json.dumps(self.vocab))
            (tmp / "nouns.json").write_text(json.dumps(self.noun_counts.to_json()))
            (tmp / "sources.json").write_text(json.dumps(self.sources))
        write_cache(directory, self.chunks, generation, fill)

    @classmethod
    def load(cls, directory: Path) -> "IncrementalBM25 | None":
        """The cache as it was saved (its generation in `generation`); None if absent or unreadable."""
        try:
            self = cls.__new__(cls)
            self.generation = json.loads((directory / "generation.json").read_text())
            self.sources = json.loads((directory / "sources.json").read_text())
            self.vocab = json.loads((directory / "vocab.json").read_text())
            self.noun_counts = _NounCounts.from_json(json.loads((directory / "nouns.json").read_text()))
            self.columns = sparse.load_npz(directory / "counts.npz").tocsc()
            with open(directory / "chunks.jsonl", encoding="utf-8") as f:
                self.chunks = [cached_chunk(json.loads(line)) for line in f]
            if self.columns.shape[0] != len(self.chunks):
                return None
            self._derive()
            return self
        except (OSError, ValueError, KeyError, TypeError):
            return None
