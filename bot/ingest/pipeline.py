"""Step 3, ingest: corpus files → chunks → vectors in the store, incrementally.

`ingest()` is the entry point every front end uses; it opens the manifest, the store and the
embedder and hands them to an `Ingestor`, which does one run with the collaborators it is given
(as LangChain's indexing API does). Tests use the seams instead of patching: `loader=`, `hasher=`,
`readable=` (how corpus files are read, hashed and permission-checked), `embed_group=`, and
`open_store=`/`open_manifest=` (to hand it a store or manifest that fails before its N-th write).

Why not LangChain's `index()` + record manager: it hashes *chunks*, so every unchanged file would
still be read, parsed and split on every run (too slow for the ≤ 2 s re-ingest goal on a large
corpus), and it has no notion of a file whose new version fails to load (we keep the old chunks).
Here an unchanged file costs one `stat`.

Nothing lost on bad input: the index remembers the corpus folder it was built from (manifest
meta `corpus`); a run that would remove every document of the index, or more than half of them
(an empty, unmounted or different folder), first asks `confirm_removal` and removes nothing if
refused. Files under a folder that cannot be listed are kept, not taken for deleted. A corpus
with no supported file creates no index (and `rebuild` then drops nothing).

Progress: files are read and chunked ahead of the embedding (up to READ_AHEAD_CHARS of text,
which is the whole run for most corpora), so the total is exact; the embedder reports each
batch. Writes happen per group of EMBED_GROUP chunks: Ctrl-C loses at most the group being
embedded.

Crash safety: see bot/ingest/repair.py; tests/test_crash.py fails an ingest before each of its
writes, and SIGKILLs real ones. Concurrency: one ingest at a time per index (a file lock; the
second waits); on a Chroma server, where the manifest is shared, ingests of disjoint folders run
at once and overlapping ones take turns (a lease, bot/store/server_manifest.py). Readers (the bot, `ask`, a second client) keep working during an ingest and see
each file's old or new chunks, never none: a changed file's chunks are overwritten in place,
then the surplus is deleted.
"""
from __future__ import annotations

import inspect
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bot.config import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, Settings, check_chunking
from bot.embed import Embedder
from bot.errors import CorpusMissing, IndexProblem, RemovalRefused
from bot.ingest.chunk import chunk_document, make_splitter
from bot.ingest.discover import (CorpusFile, Readable, can_read, discover, file_sha256, in_scope, source_of,
                                 still_bad, under_unreadable)
from bot.ingest.load import (EXTRACTION_VERSIONS, MAX_FILE_BYTES, Document, LoadError, format_of, load_document,
                             outdated_formats, too_large)
from bot.ingest.manifest import (Manifest, corpus_key, embedding_settings_check, ingest_lock, lease_scopes,
                                 open_manifest)
from bot.ingest.repair import drop_index, repair
from bot.ingest.report import ConfirmFn, IngestReport, Progress, Removal, sweeping
from bot.ingest.status import index_exists, nothing_to_do
from bot.schema import Chunk
from bot.store.chroma import VectorStore

# Chunks embedded (and then written) together; also the most a crash or Ctrl-C loses. Token-length
# batching pads less in bigger groups (1.9% at 1024, 6.5% at 256), yet 256 embeds faster on
# OpenVINO: 68.6 vs 63.0 chunks/s on the same 3,072 Python-docs chunks, interleaved; a timed
# ingest of 60 of those files (1,133 chunks) 48 vs 34 chunks/s on a busy host.
EMBED_GROUP = 256
# Files are read and chunked ahead of the embedding, up to this much chunk text: for most corpora
# that is all of it, so the progress total is exact from the start (the Python docs: 13 MB).
READ_AHEAD_CHARS = 32_000_000
KEEPING = "; keeping the previously indexed version"

SkipFn = Callable[[str, str], None]
ProgressFn = Callable[[int, int], None]  # (done, total): chunks embedded, or files read
NoticeFn = Callable[[str], None]
Loader = Callable[[Path, str], Document]
Hasher = Callable[[Path], str]


@dataclass
class _Todo:
    """A file to (re-)index: its content hash and whether the index had a version of it."""

    file: CorpusFile
    sha256: str
    existed: bool
    chunks: list[Chunk] = field(default_factory=list)


class Ingestor:
    """One ingest run over an open manifest and store, with the embedder and the file access
    (`loader`, `hasher`, `readable`) it is given.

    Callbacks: `on_skip(source, reason)` per file or folder that cannot be indexed;
    `on_reading(files, total)` while files are read and chunked; `on_progress(chunks, total)` as
    chunks are embedded (per embedding batch when the embedder reports them); `on_notice(line)`
    for what the run is about to do that the user should know (chunking changed, vectors missing);
    `confirm_removal(Removal)` before removing every document of the index or most of them
    (False: nothing is removed and `RemovalRefused` is raised; None: no confirmation asked)."""

    def __init__(self, settings: Settings, manifest: Manifest, store: VectorStore, embedder: Embedder, *,
                 report: IngestReport | None = None, on_skip: SkipFn | None = None,
                 on_progress: ProgressFn | None = None, on_reading: ProgressFn | None = None,
                 on_notice: NoticeFn | None = None, confirm_removal: ConfirmFn | None = None,
                 loader: Loader = load_document, hasher: Hasher = file_sha256, readable: Readable = can_read,
                 embed_group: int = EMBED_GROUP, read_ahead: int = READ_AHEAD_CHARS) -> None:
        self.settings = settings
        self.manifest = manifest
        self.store = store
        self.embedder = embedder
        self.report = IngestReport() if report is None else report
        self.skip = on_skip or (lambda source, reason: None)
        self.on_progress = on_progress
        self.on_reading = on_reading
        self.notice = on_notice or (lambda line: None)
        self.confirm_removal = confirm_removal
        self.loader = loader
        self.hasher = hasher
        self.readable = readable
        self.embed_group = embed_group
        self.read_ahead = read_ahead
        self._batch_progress = _accepts_on_batch(embedder)
        self._engine_ready = False
        # What the index held when this run started (after repair), and whether it re-chunks.
        self.known: dict = {}
        self.skips: dict = {}
        self.rechunk = False
        self.reextract: set[str] = set()  # formats whose text extraction changed since the index was made

    def run(self, roots: list[Path]) -> None:
        corpus, manifest = self.settings.corpus, self.manifest
        whole_corpus = roots == [corpus]
        # This run's chunking, checked before anything is written.
        chunking = self._chunking()
        self.settings = self.settings.with_(chunk_size=chunking["size"], chunk_overlap=chunking["overlap"])

        unreadable: list[str] = []  # folders that could not be listed: their files are kept as they are

        def skip(source: str, reason: str) -> None:
            if source.endswith("/"):
                unreadable.append(source)
            self.skip(source, reason)

        files = discover(roots, corpus, skip, self.readable)
        present = {f.source for f in files}
        self._confirm_removals(manifest.files(), present, roots, whole_corpus, unreadable)

        stored, expected = self.store.count(), manifest.expected_chunks()
        if stored < expected:  # e.g. the vector store's database was deleted
            self.notice(f"the vector store lacks {expected - stored} of the index's {expected} chunks; "
                        "embedding them again")
        prefixes = [source_of(r, corpus) for r in roots]
        owned = (lambda s: in_scope(s, prefixes, whole_corpus)) if manifest.shared else None
        self.report.repaired = repair(manifest, self.store, manifest.files(), owned)
        self.known, self.skips = manifest.files(), manifest.skipped()
        self._forget_gone(present, roots, whole_corpus, unreadable)

        # New chunking settings re-chunk every file (the setting is saved only once all are done).
        stored = manifest.get("chunking")
        self.rechunk = stored not in (None, chunking)
        # A new index has nothing to read again.
        recorded = manifest.get("extraction")
        self.reextract = outdated_formats(recorded) if recorded is not None or self.known else set()
        todo = [todo for f in files if (todo := self._plan(f)) is not None]
        if self.rechunk and todo:
            self.notice(f"chunking changed ({stored['size']}/{stored['overlap']} → "
                        f"{chunking['size']}/{chunking['overlap']}): re-embedding "
                        f"{'all ' if whole_corpus else ''}{len(todo)} file{'s' if len(todo) != 1 else ''}")
        elif self.reextract:
            again = [name for t in todo if t.existed and (name := format_of(t.file.path)) in self.reextract]
            if again:
                self.notice(f"this version of qabot reads {', '.join(sorted(set(again)))} files differently: "
                            f"reading and embedding {len(again)} file{'s' if len(again) != 1 else ''} again")
        self._index(todo)

        if self.report.changed:
            manifest.bump_generation()
        manifest.put("embedding", self.embedder.settings)
        if not self.rechunk or whole_corpus:  # a partial run leaves other files to re-chunk
            manifest.put("chunking", chunking)
        if not self.reextract or whole_corpus:  # ... and other files to read again
            manifest.put("extraction", EXTRACTION_VERSIONS)
        if whole_corpus or (manifest.get("corpus") is None and corpus.is_dir()):
            manifest.put("corpus", corpus_key(corpus))
        manifest.put("last_ingest", time.time())
        self.report.chunks_total = self.store.count()
        self.report.documents = manifest.documents()

    def _gone(self, known: dict, present: set[str], roots: list[Path], whole_corpus: bool,
              unreadable: list[str]) -> list[str]:
        """Known files inside the scanned roots that are no longer there (files under a folder
        that could not be listed are not gone: they are kept as they are)."""
        prefixes = [source_of(r, self.settings.corpus) for r in roots]
        return sorted(s for s in known if s not in present and in_scope(s, prefixes, whole_corpus)
                      and not under_unreadable(s, unreadable))

    def _confirm_removals(self, known: dict, present: set[str], roots: list[Path], whole_corpus: bool,
                          unreadable: list[str]) -> None:
        """Ask before removing every document of the index, or most of them (see `Ingestor`)."""
        gone = self._gone(known, present, roots, whole_corpus, unreadable)
        if self.confirm_removal is None or not sweeping(len(gone), len(known)):
            return
        removal = Removal(len(gone), len(known), corpus_key(self.settings.corpus), self.manifest.get("corpus"))
        if not self.confirm_removal(removal):
            raise RemovalRefused(f"{removal.describe()}; nothing removed")

    def _chunking(self) -> dict:
        """This run's chunk size and overlap: the settings', else the index's, else the defaults."""
        stored = self.manifest.get("chunking") or {}
        overlap = self.settings.chunk_overlap
        chunking = {"size": self.settings.chunk_size or stored.get("size") or DEFAULT_CHUNK_SIZE,
                    "overlap": overlap if overlap is not None else stored.get("overlap", DEFAULT_CHUNK_OVERLAP)}
        check_chunking(chunking["size"], chunking["overlap"])  # one given, the other the index's
        return chunking

    def _forget_gone(self, present: set[str], roots: list[Path], whole_corpus: bool, unreadable: list[str]) -> None:
        """Deleted: known files inside the scanned roots that are gone (and their skip records)."""
        for source in self._gone(self.skips, present, roots, whole_corpus, unreadable):
            self.manifest.clear_skipped(source)
        for source in self._gone(self.known, present, roots, whole_corpus, unreadable):
            self.manifest.set_state(source, "deleting")
            self.store.delete_source(source)
            self.manifest.remove(source)
            self.report.deleted += 1

    def _plan(self, f: CorpusFile) -> _Todo | None:
        """Whether `f` must be (re-)indexed: decided by size+mtime first, content hash second."""
        row = self.known.get(f.source)
        done = row is not None and row["state"] == "done"
        keeping = KEEPING if row is not None else ""
        if done and (self.rechunk or format_of(f.path) in self.reextract):
            sha = self._hash(f, keeping, remember=False)
            return None if sha is None else _Todo(f, sha, existed=True)
        if done and row["size"] == f.size and row["mtime_ns"] == f.mtime_ns:
            self.report.unchanged += 1
            return None
        if still_bad(f, self.skips, self.readable):
            self.skip(f.source, self.skips[f.source].reason + keeping)
            return None
        if f.size > MAX_FILE_BYTES:  # before hashing: a huge file costs one stat, not a read
            self._skip_file(f, too_large(f.size), keeping)
            return None
        sha = self._hash(f, keeping, remember=True)
        if sha is None:
            return None
        if done and row["sha256"] == sha:
            self.manifest.touch(f.source, f.size, f.mtime_ns)
            self.report.unchanged += 1
            return None
        return _Todo(f, sha, existed=row is not None)

    def _hash(self, f: CorpusFile, keeping: str, remember: bool) -> str | None:
        """The content hash of `f`; None when it cannot be read (said, and with `remember` also
        recorded so that it is not read again until it changes)."""
        try:
            return self.hasher(f.path)
        except OSError as exc:
            reason = f"cannot read ({exc.strerror or exc})"
            if remember:
                self._skip_file(f, reason, keeping)
            else:
                self.skip(f.source, reason + keeping)
            return None

    def _skip_file(self, f: CorpusFile, reason: str, keeping: str) -> None:
        """Remember why `f` cannot be indexed (not read again until it changes) and say so."""
        self.manifest.set_skipped(f.source, f.size, f.mtime_ns, reason)
        self.skip(f.source, reason + keeping)

    def _index(self, todo: list[_Todo]) -> None:
        """Load and chunk ahead (up to `read_ahead` characters of chunk text: usually the whole
        run, so the progress total is exact), then embed and write in groups of about
        `embed_group` chunks that span files (short files still batch well). A crash or Ctrl-C
        loses at most the group being embedded; memory holds the read-ahead, whatever the
        corpus size."""
        size, overlap = self.settings.chunk_size, self.settings.chunk_overlap
        splitter = make_splitter(size, overlap)
        progress = Progress(bytes_left=sum(t.file.size for t in todo), guess_per_byte=1 / max(1, size - overlap))
        unread, ready = deque(todo), deque()
        read = 0
        while unread or ready:
            while unread and progress.waiting_chars < self.read_ahead:
                item = unread.popleft()
                progress.bytes_left -= item.file.size
                if self._load(item, splitter):
                    progress.loaded(item.file.size, item.chunks)
                    ready.append(item)
                read += 1
                if self.on_reading:
                    self.on_reading(read, len(todo))
            group: list[_Todo] = []
            waiting = 0
            while ready and waiting < self.embed_group:
                item = ready.popleft()
                group.append(item)
                waiting += len(item.chunks)
            if group:
                self._write_group(group, progress)

    def _write_group(self, group: list[_Todo], progress: Progress) -> None:
        chunks = [c for item in group for c in item.chunks]
        if chunks and not self._engine_ready:
            self._prepare_engine()
        total = progress.total()
        done = progress.written
        if self.on_progress:
            self.on_progress(done, total)

        def on_batch(n: int) -> None:
            nonlocal done
            done += n
            self.on_progress(min(done, total), total)

        vectors = self._embed([c.text for c in chunks], on_batch if self.on_progress else None)
        offset = 0
        for item in group:
            self._write_file(item, vectors[offset:offset + len(item.chunks)])
            offset += len(item.chunks)
        progress.wrote(chunks)
        if self.on_progress:
            self.on_progress(progress.written, progress.total())

    def _prepare_engine(self) -> None:
        """Load the ingest engine before the first group (the first run on a machine exports the
        model first, and says so), so that the embedding progress measures embedding."""
        self._engine_ready = True
        prepare = getattr(self.embedder, "engine_for_ingest", None)
        if callable(prepare):
            prepare()

    def _embed(self, texts: list[str], on_batch: Callable[[int], None] | None):
        if on_batch is not None and self._batch_progress:
            return self.embedder.embed(texts, on_batch=on_batch)
        return self.embedder.embed(texts)

    def _load(self, item: _Todo, splitter) -> bool:
        """Load and chunk one file; False (recorded and said) when it cannot be indexed."""
        f = item.file
        try:
            doc = self.loader(f.path, f.source)
        except LoadError as exc:
            self._skip_file(f, str(exc), KEEPING if item.existed else "")
            return False
        item.chunks = chunk_document(doc, splitter)
        return True

    def _write_file(self, item: _Todo, vectors) -> None:
        """Marked `pending` before the store is touched and `done` after (see repair.py)."""
        f, chunks = item.file, item.chunks
        self.manifest.set_file(f.source, item.sha256, f.size, f.mtime_ns, len(chunks), "pending",
                               chunks[0].title if chunks else "")
        # Overwrite in place, then drop what the old version had beyond: a query running
        # meanwhile sees old or new chunks of the file, never none.
        if chunks:
            self.store.upsert(chunks, vectors)
        self.store.delete_source_except(f.source, {c.id for c in chunks})
        self.manifest.set_state(f.source, "done")
        self.manifest.clear_skipped(f.source)
        self.report.chunks_embedded += len(chunks)
        if item.existed:
            self.report.updated += 1
        else:
            self.report.added += 1


def _accepts_on_batch(embedder) -> bool:
    """Whether `embedder.embed` takes an `on_batch` callback (ours does; a test's stand-in may not)."""
    try:
        params = inspect.signature(embedder.embed).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "on_batch" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def ingest(
    settings: Settings,
    paths: list[Path] | None = None,
    rebuild: bool = False,
    embedder: Embedder | None = None,
    on_skip: SkipFn | None = None,
    on_progress: ProgressFn | None = None,
    on_wait: Callable[[], None] | None = None,
    missing_ok: bool = False,
    *,
    on_reading: ProgressFn | None = None,
    on_notice: NoticeFn | None = None,
    confirm_removal: ConfirmFn | None = None,
    loader: Loader = load_document,
    hasher: Hasher = file_sha256,
    readable: Readable = can_read,
    embed_group: int = EMBED_GROUP,
    read_ahead: int = READ_AHEAD_CHARS,
    open_store: Callable[[Settings], VectorStore] = VectorStore,
    open_manifest: Callable[[Settings], Manifest] = open_manifest,
) -> IngestReport:
    """Bring the index in line with the corpus (or with `paths` inside/outside it). With
    `missing_ok`, a path that does not exist is indexed as empty (its chunks are deleted).
    The callbacks are `Ingestor`'s; `confirm_removal` (None: never asked) guards against an
    ingest that would remove every document of the index or most of them.

    A corpus with no supported file at all creates no index and leaves an existing one alone,
    even with `rebuild` (`report.documents` is then 0, or None for an index left alone).
    The keyword-only seams `loader`...`open_manifest` are for tests (see the module docstring)."""
    started = time.perf_counter()
    report = IngestReport()

    def skip(source: str, reason: str) -> None:
        report.skipped.append((source, reason))
        if on_skip:
            on_skip(source, reason)

    roots = [Path(p) for p in paths] if paths else [settings.corpus]
    for root in roots:
        if not root.exists() and not missing_ok:
            raise CorpusMissing(f"corpus path not found: {root}")

    if not paths and (rebuild or not index_exists(settings)) and _nothing_to_index(settings, skip, readable):
        report.documents = None if rebuild and index_exists(settings) else 0  # nothing to index: nothing done
        report.corpus_empty = True
    elif not rebuild and not paths and nothing_to_do(settings, readable):
        _report_unchanged(settings, report, skip, readable=readable, open_manifest=open_manifest)
    else:
        with ingest_lock(settings.index, on_wait):
            if rebuild and not settings.chroma_url:
                drop_index(settings)
            manifest = open_manifest(settings)
            try:
                # On a server: a lease on the folders this run writes, which other machines see.
                manifest.lock(lease_scopes(settings, roots, everything=rebuild), on_wait)
                if rebuild and settings.chroma_url:
                    drop_index(settings)
                store = open_store(settings)
                precision = embedding_settings_check(manifest, settings)
                if embedder is None:
                    embedder = Embedder(precision=precision)
                elif embedder.precision != precision:
                    raise IndexProblem(f"embedder precision {embedder.precision} != index precision {precision}")
                Ingestor(settings, manifest, store, embedder, report=report, on_skip=skip, on_progress=on_progress,
                         on_reading=on_reading, on_notice=on_notice, confirm_removal=confirm_removal,
                         loader=loader, hasher=hasher, readable=readable, embed_group=embed_group,
                         read_ahead=read_ahead).run(roots)
            finally:
                manifest.close()
    report.seconds = time.perf_counter() - started
    return report


def _nothing_to_index(settings: Settings, skip: SkipFn, readable: Readable) -> bool:
    """Whether the corpus holds no supported file at all (what could not be looked at is then
    reported to `skip`; otherwise the run reports it)."""
    skipped: list[tuple[str, str]] = []
    if discover([settings.corpus], settings.corpus, lambda s, r: skipped.append((s, r)), readable):
        return False
    for source, reason in skipped:
        skip(source, reason)
    return True


def _report_unchanged(settings: Settings, report: IngestReport, skip: SkipFn, *, readable: Readable,
                      open_manifest: Callable[[Settings], Manifest]) -> None:
    """The stat-only fast path: opening Chroma alone costs seconds. Interrupted runs leave rows
    that are not `done`, which `nothing_to_do` sees, so repairs still happen. Still says what is
    not indexed, as the full path does, without reading those files."""
    manifest = open_manifest(settings)
    try:
        known, known_skips = manifest.files(), manifest.skipped()
        report.unchanged = sum(1 for r in known.values() if r["state"] == "done")
        report.documents = report.unchanged
        report.chunks_total = manifest.expected_chunks()
        if manifest.get("corpus") != corpus_key(settings.corpus):  # an index made before it remembered
            manifest.put("corpus", corpus_key(settings.corpus))
    finally:
        manifest.close()
    for f in discover([settings.corpus], settings.corpus, skip, readable):
        if still_bad(f, known_skips, readable):
            keeping = KEEPING if f.source in known else ""
            skip(f.source, known_skips[f.source].reason + keeping)
            report.unchanged -= 1 if keeping else 0
