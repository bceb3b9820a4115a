"""Corpus discovery: which files an ingest looks at, the names they are cited by, and their hashes.

Only `stat` calls here (and a hash when size or mtime changed): an unchanged file costs one stat.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bot.ingest.load import MAX_FILE_BYTES, is_supported

Readable = Callable[[Path], bool]


@dataclass
class CorpusFile:
    path: Path
    source: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SkipRecord:
    """Why a file could not be indexed, and the version (size and mtime) that could not."""

    size: int
    mtime_ns: int
    reason: str


def can_read(path: Path) -> bool:
    """Whether this process may read a file, or list a folder: discovery's one permission check.
    Tests running as root (who may read anything) pass their own `readable` instead."""
    return os.access(path, os.R_OK | os.X_OK if os.path.isdir(path) else os.R_OK)


def discover(roots: list[Path], corpus: Path, on_skip: Callable[[str, str], None],
             readable: Readable = can_read) -> list[CorpusFile]:
    """Supported files under `roots`, following symlinks but never looping. A file that cannot be
    indexed, and a folder that cannot be listed (not `readable`, or failing when listed), is
    reported to `on_skip`; folders with a trailing "/" (`sub/`), so that callers keep what was
    indexed from them (see `under_unreadable`)."""
    found: dict[str, CorpusFile] = {}
    corpus_abs = corpus.resolve()

    def folder_failed(path: Path, exc: OSError | None = None) -> None:
        if exc is None or isinstance(exc, PermissionError):
            reason = "permission denied"
        else:
            reason = f"cannot read ({exc.strerror or exc})"
        on_skip(source_of(path, corpus) + "/", reason)

    def walk_error(exc: OSError) -> None:
        folder_failed(Path(exc.filename) if exc.filename else corpus_abs, exc)

    def add(path: Path) -> None:
        try:
            st = path.stat()
        except OSError as exc:
            on_skip(source_of(path, corpus), f"cannot read ({exc.strerror or exc})")
            return
        source = source_of(path, corpus)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, /dev/zero never end it
            on_skip(source, "not a regular file")
            return
        found[source] = CorpusFile(path, source, st.st_size, st.st_mtime_ns)

    for root in roots:
        if root.is_file():
            add(root)
            continue
        seen_dirs: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=walk_error):
            try:
                st = os.stat(dirpath)
            except OSError as exc:
                folder_failed(Path(dirpath), exc)
                dirnames[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second way in
                dirnames[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if not readable(Path(dirpath)):
                folder_failed(Path(dirpath))
                dirnames[:] = []
                continue
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or not is_supported(path):
                    continue
                add(path)
    return sorted(found.values(), key=lambda f: f.source)


def source_of(path: Path, corpus: Path) -> str:
    """The name a file is cited by: its path relative to the corpus (lexically, so a symlinked
    file keeps its own name; the corpus as given first, then as resolved, so a corpus reached
    through a symlinked folder still gives relative names), or the absolute path for files
    outside the corpus."""
    absolute = Path(os.path.abspath(path))
    for root in (Path(os.path.abspath(corpus)), corpus.resolve()):
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            pass
    return absolute.as_posix()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def still_bad(f: CorpusFile, skips: dict[str, SkipRecord], readable: Readable = can_read) -> bool:
    """Skipped last time and unchanged since. A chmod fixes a read error without touching the
    mtime, so those are checked again (`readable`: one stat and one access() call)."""
    entry = skips.get(f.source)
    if entry is None or entry.size != f.size or entry.mtime_ns != f.mtime_ns:
        return False
    if "cannot read" in entry.reason or "permission" in entry.reason.lower():
        return not readable(f.path)
    return True


def loadable(f: CorpusFile) -> bool:
    return 0 < f.size <= MAX_FILE_BYTES


def under_unreadable(source: str, folders: list[str]) -> bool:
    """Whether a file's source lies in one of the folders (`sub/`, as `discover` reports them)
    that could not be listed: its indexed version is kept, not taken for deleted."""
    for folder in folders:
        prefix = folder.rstrip("/")
        if prefix in ("", ".") or source.startswith(prefix + "/"):
            return True
    return False


def in_scope(source: str, prefixes: list[str], whole_corpus: bool) -> bool:
    if whole_corpus:
        return True
    return any(source == p or source.startswith(p.rstrip("/") + "/") for p in prefixes)
