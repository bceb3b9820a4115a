"""`qabot ingest --watch`: keep the index in line with the corpus while files change.

After the normal ingest, the corpus folder (or the paths given) is watched with watchfiles.
Changes are gathered until the corpus has been quiet for about a second, then one incremental
ingest brings the index up to date and one summary line is printed per batch. The ingest lock
is held only while a batch is indexed, so a manual `qabot ingest` can still run in between.
Ctrl-C (or SIGTERM) stops watching cleanly; a batch interrupted halfway is repaired by the next
ingest like any other crash (see bot/ingest/repair.py).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from watchfiles import Change, watch as watch_files

from bot.config import Settings
from bot.errors import IndexProblem
from bot.ingest.load import is_supported
from bot.ingest.pipeline import ingest

QUIET_MS = 1000  # a batch is indexed once nothing has changed for this long...
MAX_WAIT_MS = 10_000  # ...or after this long, even while changes keep coming


def relevant_change(path: str, root: str, deleted: bool, index_dir: Path) -> bool:
    """Whether a changed path (under `root`) can affect the index: a supported file, or a
    directory (a folder moved in or out brings or takes its files without an event for each)."""
    p = Path(path)
    rel = p.relative_to(root) if p != Path(root) and p.is_relative_to(root) else Path(p.name)
    if any(part.startswith(".") for part in rel.parts):
        return False
    if p.resolve().is_relative_to(index_dir):
        return False  # the index itself, when it lives inside the corpus
    if is_supported(p):
        return True
    if deleted:
        return p.suffix == ""  # probably a folder; a stray `x.csv` is not worth an ingest
    return p.is_dir()


def watch(
    settings: Settings,
    paths: list[Path] | None = None,
    echo: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    on_batch: Callable[[object], None] | None = None,
) -> int:
    """Re-index on every batch of changes until Ctrl-C, SIGTERM or `stop_event`; returns the
    number of batches indexed. `on_batch` receives each IngestReport (or the IndexProblem)."""

    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    roots = [Path(p) for p in paths] if paths else [settings.corpus]
    dir_roots = [str(r.absolute()) for r in roots if r.is_dir()]
    file_roots = {str(r.absolute()) for r in roots if not r.is_dir()}
    # Watch folders, not single files: editors save by writing a new file and renaming it over
    # the old one, which a watch on the file itself would not survive.
    watched = sorted(set(dir_roots) | {str(Path(f).parent) for f in file_roots})
    index_dir = settings.index.resolve()

    def keep(change, path: str) -> bool:
        if path in file_roots:
            root = str(Path(path).parent)
        else:
            root = next((d for d in dir_roots if path == d or path.startswith(d.rstrip("/") + "/")), None)
            if root is None:
                return False
        return relevant_change(path, root, change == Change.deleted, index_dir)

    stop = stop_event or threading.Event()
    previous = _stop_on_sigterm()
    batches = 0
    echo(f"Watching {', '.join(watched)} for changes (Ctrl-C to stop)…")
    try:
        for changes in watch_files(*watched, watch_filter=keep, debounce=MAX_WAIT_MS, step=QUIET_MS,
                                   stop_event=stop, raise_interrupt=True):
            changed = {p for _, p in changes}
            batches += 1
            result = _reindex(settings, roots, changed, echo)
            if on_batch:
                on_batch(result)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    echo("Stopped watching.")
    return batches


def _reindex(settings: Settings, roots: list[Path], changed: set[str], echo):
    """One incremental ingest; problems are reported in one line and watching goes on."""
    # A file given by name that has gone away is indexed as "nothing there" (its chunks go);
    # a vanished folder is an error to report, not a reason to empty the index.
    gone = [r for r in roots if not r.exists() and not is_supported(r)]
    if gone:
        echo(f"[{time.strftime('%H:%M:%S')}] Error: {gone[0]} has gone away; not indexing until it is back")
        return None
    started = time.strftime("%H:%M:%S")

    corpus = settings.corpus.absolute()

    def on_skip(source: str, reason: str) -> None:
        # Only files of this batch (or under a folder of it): a bad file left in the corpus is
        # not re-reported with every batch.
        path = source if Path(source).is_absolute() else str(corpus / source)
        if any(path == c or path.startswith(c.rstrip("/") + "/") for c in changed):
            echo(f"skipped {source}: {reason}")

    try:
        report = ingest(settings, roots if roots != [settings.corpus] else None,
                        on_skip=on_skip, missing_ok=True,
                        on_wait=lambda: echo("Another ingest is running on this index; waiting for it…"))
    except IndexProblem as exc:
        echo(f"[{started}] Error: {exc}")
        return exc
    echo(f"[{started}] {report.summary_line()}")
    return report


def _stop_on_sigterm():
    """Treat SIGTERM like Ctrl-C (a service manager stopping the watcher); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
