"""The scopes one bot process answers from: each scope's QA pipeline loaded once, on first use,
all of them sharing one embedder (one model in memory, however many scopes).

The default scope is the corpus/index the bot was started with (Settings); scope NAME lives in
`scopes_dir/NAME/corpus` and `scopes_dir/NAME/index` (its own Chroma collection on a Chroma
server). Everything here blocks (models, SQLite, Chroma): the cogs call it in worker threads.
"""
from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import Settings
from bot.discord_bot.scopes import DEFAULT_SCOPE
from bot.errors import IndexProblem, QabotError, RemovalRefused
from bot.schema import Answer, Turn

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (chunks embedded, chunks to embed)


def open_qa(name: str, settings: Settings, embedder, warn: Callable[[str], None] = log.warning):
    """The scope's QA, its index checked as `ask` would: missing, damaged or empty is one line;
    vectors partly missing are a warning."""
    from bot.ingest.status import index_state, lacking, unusable
    from bot.qa.pipeline import QA

    state = index_state(settings)
    if state is None:
        if name != DEFAULT_SCOPE:
            raise IndexProblem(f"the scope `{name}` has no documents yet; an admin can add some with /qabot add")
        raise IndexProblem(f"no index at {settings.chroma_url or settings.index}; run `qabot ingest` first")
    problem = unusable(settings, state)
    if problem:
        raise IndexProblem(problem)
    warning = lacking(settings, state)
    if warning:
        warn(warning)
    return QA(settings, embedder=embedder)


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)  # sources added or replaced
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)

    def line(self) -> str:
        """"3 files added, 1 skipped: scan.pdf has no text to index"."""
        n = len(self.added)
        text = f"{n} file{'s' * (n != 1)} added"
        if self.skipped:
            why = "; ".join(f"{name}: {reason}" for name, reason in self.skipped)
            text += f", {len(self.skipped)} skipped: {why}"
        return text


class OneCorpus:
    """A bot given plain functions (the way it was set up before scopes): they answer for the
    default scope; there are no other scopes and no documents to manage from Discord."""

    def __init__(self, answer_fn, reindex_fn, stream_fn=None):
        self.answer_fn, self.reindex_fn, self.stream_fn = answer_fn, reindex_fn, stream_fn

    @property
    def streams(self) -> bool:
        return self.stream_fn is not None

    @staticmethod
    def _only_default(name: str) -> None:
        if name != DEFAULT_SCOPE:
            raise QabotError(f"this bot serves one corpus only, not the scope `{name}`")

    def answer(self, name: str, question: str, history: list[Turn]) -> Answer:
        self._only_default(name)
        return self.answer_fn(question, history)

    def stream(self, name: str, question: str, history: list[Turn]) -> Iterator[str | Answer]:
        self._only_default(name)
        yield from self.stream_fn(question, history)

    def reindex(self, name: str) -> str:
        self._only_default(name)
        return self.reindex_fn()

    def create(self, name: str) -> bool:
        self._only_default(name)
        return False

    def _no_documents(self, *args, **kwargs):
        raise QabotError("documents can be managed from Discord only in a bot started with `qabot discord`")

    sources = add = remove = _no_documents


class Library:
    """Scope name → its QA, loaded once. `make_qa(name, settings, embedder)` is a seam for tests.

    `qabot discord` hands it to the bot in place of an answer function (client.QABot)."""

    def __init__(self, settings: Settings, scopes_dir: Path, *, embedder=None,
                 make_qa: Callable = open_qa) -> None:
        self.settings = settings
        self.scopes_dir = Path(scopes_dir)
        self._embedder = embedder
        self._make_qa = make_qa
        self._qas: dict[str, object] = {}
        self._guard = threading.Lock()  # guards the two dicts below
        self._scope_locks: dict[str, threading.Lock] = {}
        self.loads: dict[str, int] = {}  # how often each scope's QA was built (once, unless it failed)

    @property
    def streams(self) -> bool:
        """Whether answers are written by an LLM (and can be shown as they are written)."""
        return bool(self.settings.llm)

    @property
    def embedder(self):
        with self._guard:
            if self._embedder is None:
                from bot.embed import Embedder

                self._embedder = Embedder(precision=self.settings.precision)
            return self._embedder

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._scope_locks.setdefault(name, threading.Lock())

    # -- what scopes there are

    def settings_for(self, name: str) -> Settings:
        if name == DEFAULT_SCOPE:
            return self.settings
        home = self.scopes_dir / name
        return self.settings.with_(corpus=home / "corpus", index=home / "index",
                                   collection=f"{self.settings.collection}-{name}")

    def exists(self, name: str) -> bool:
        from bot.ingest.status import index_exists

        s = self.settings_for(name)
        return name in self._qas or s.corpus.is_dir() or index_exists(s)

    def names(self) -> list[str]:
        found = sorted(p.name for p in self.scopes_dir.glob("*/corpus") if p.is_dir()) if self.scopes_dir.is_dir() else []
        return ([DEFAULT_SCOPE] if self.exists(DEFAULT_SCOPE) else []) + [n for n in found if n != DEFAULT_SCOPE]

    def create(self, name: str) -> bool:
        """Make an empty scope (its corpus folder); False if it existed."""
        if self.exists(name):
            return False
        self.settings_for(name).corpus.mkdir(parents=True, exist_ok=True)
        return True

    # -- answering

    def qa(self, name: str):
        """The scope's QA, built on first use (ingesting a corpus that has no index yet)."""
        qa = self._qas.get(name)
        if qa is not None:
            return qa
        with self._lock(name):
            if name not in self._qas:
                from bot.ingest.status import index_exists

                settings = self.settings_for(name)
                if name != DEFAULT_SCOPE and not index_exists(settings) and self.sources(name):
                    self._ingest(settings)  # documents put in the scope's folder by hand
                # The first QA makes the embedder in its index's precision; every later one shares it
                # (an index embedded in another precision is then refused, one line, by QA).
                qa = self._make_qa(name, settings, self._embedder)
                with self._guard:
                    if self._embedder is None:
                        self._embedder = getattr(qa, "embedder", None)
                self._qas[name] = qa
                self.loads[name] = self.loads.get(name, 0) + 1
            return self._qas[name]

    def warm_up(self) -> None:
        """Load the default scope and the model now (at start-up) rather than at the first question."""
        if self.exists(DEFAULT_SCOPE) or not self.names():  # nothing at all: "no index …", one line
            qa = self.qa(DEFAULT_SCOPE)
            if hasattr(qa, "warm_up"):
                qa.warm_up()
        else:  # scopes only: the shared model, at least
            self.embedder.warm_up()

    def answer(self, name: str, question: str, history: list[Turn]) -> Answer:
        return self.qa(name).answer(question, history=history)

    def stream(self, name: str, question: str, history: list[Turn]) -> Iterator[str | Answer]:
        """With an LLM: the answer's text as it is written, then the verified Answer (QA.stream)."""
        yield from self.qa(name).stream(question, history=history)

    def _refresh(self, name: str) -> None:
        qa = self._qas.get(name)
        if qa is not None and hasattr(qa, "refresh"):
            qa.refresh()  # pick up the new index generation

    # -- documents

    def sources(self, name: str) -> list[str]:
        """The supported files in the scope's corpus folder, as sources (relative paths)."""
        from bot.ingest.load import is_supported

        corpus = self.settings_for(name).corpus
        if not corpus.is_dir():
            return []
        return sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*")
                      if p.is_file() and is_supported(p) and not p.name.startswith("."))

    def _ingest(self, settings: Settings, paths: list[Path] | None = None, **callbacks):
        from bot.ingest.pipeline import ingest

        # The embedder the QAs share, once there is one (else ingest makes one in the index's
        # precision); either way the model itself is loaded once per process (EngineRegistry).
        return ingest(settings, paths=paths, embedder=self._embedder, missing_ok=paths is not None, **callbacks)

    def reindex(self, name: str) -> str:
        """What /reindex does: re-sync the scope's index with its corpus; the summary line. Never
        re-syncs an index built from another folder, nor removes every document or most of them."""
        from bot.ingest.status import foreign_corpus, index_state, ingest_command

        settings = self.settings_for(name)
        with self._lock(name):
            note = foreign_corpus(settings, index_state(settings))
            if note:
                raise IndexProblem(note)
            refused = []

            def never(removal) -> bool:
                refused.append(removal)
                return False

            try:
                report = self._ingest(settings, confirm_removal=never)
            except RemovalRefused:
                raise IndexProblem(f"not re-syncing: that would remove {refused[0].what()}; "
                                   f"run `{ingest_command(settings)}` on the bot's machine to do it") from None
            self._refresh(name)
        return report.summary_line()

    def add(self, name: str, files: dict[str, bytes], on_progress: ProgressFn | None = None) -> AddResult:
        """Store `files` (file name → content, already checked) in the scope's corpus and index
        them. A file the loader cannot index (e.g. a scan without text) is taken out again; if the
        run fails, every new file is, and the index forgets them: nothing is left half-added."""
        settings = self.settings_for(name)
        corpus = settings.corpus
        result = AddResult()
        with self._lock(name):
            corpus.mkdir(parents=True, exist_ok=True)
            backups: dict[Path, bytes | None] = {}
            for filename, data in files.items():
                path = corpus / filename
                backups[path] = path.read_bytes() if path.exists() else None
                tmp = path.with_name(f".{path.name}.part")
                tmp.write_bytes(data)
                tmp.replace(path)
            skipped: dict[str, str] = {}
            try:
                self._ingest(settings, list(backups), on_progress=on_progress,
                             on_skip=lambda source, reason: skipped.setdefault(Path(source).name, reason))
            except BaseException:
                self._restore(settings, backups)
                raise
            bad = [p for p in backups if p.name in skipped]
            if bad:
                self._restore(settings, {p: backups[p] for p in bad})
            result.added = [p.name for p in backups if p not in bad]
            result.skipped = [(p.name, skipped[p.name]) for p in bad]
            self._refresh(name)
        return result

    def _restore(self, settings: Settings, backups: dict[Path, bytes | None]) -> None:
        """Put the files back as they were before an add, and the index with them."""
        for path, old in backups.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
        try:
            self._ingest(settings, list(backups))
        except QabotError:
            pass  # nothing was indexed then either

    def remove(self, name: str, source: str) -> str:
        """Delete `source` from the scope's corpus and its passages from the index."""
        settings = self.settings_for(name)
        corpus = settings.corpus.resolve()
        path = (corpus / source).resolve()
        if corpus not in path.parents or not path.is_file():
            known = self.sources(name)
            hint = f" (it has {len(known)}: see /qabot sources)" if known else " (it has none)"
            raise QabotError(f"no document `{source}` in the scope `{name}`{hint}")
        with self._lock(name):
            trash = path.with_name(f".{path.name}.removed")
            shutil.move(path, trash)
            try:
                self._ingest(settings, [path])
            except BaseException:
                shutil.move(trash, path)
                raise
            trash.unlink()
            self._refresh(name)
        rel = path.relative_to(corpus).as_posix()
        return f"Removed `{rel}` from the scope `{name}`."
