"""Running a blocking iterator in a worker thread, so that its consumer can give up on it: at a
deadline (an LLM call), on Ctrl-C (chat), or from an event loop that must not block (Discord).

One mechanism for all three: the worker hands each item (or its exception, or the end) to a
`deliver` callback; closing stops the worker at its next item and closes the iterator.
"""
from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

END = object()  # delivered once the iterator is exhausted (or failed: then with its exception)


class Worker:
    """Iterates `produce()` in a daemon thread and calls `deliver(item, error)` for each item,
    then `deliver(END, error_or_None)` once. `deliver` runs in the worker thread."""

    def __init__(self, produce: Callable[[], Iterable[Any]], deliver: Callable[[Any, BaseException | None], None],
                 name: str = "qabot-worker") -> None:
        self._produce = produce
        self._deliver = deliver
        self.stopped = threading.Event()
        ctx = contextvars.copy_context()  # keeps LangChain callbacks/tracing attached
        threading.Thread(target=ctx.run, args=(self._run,), daemon=True, name=name).start()

    def _run(self) -> None:
        iterator = None
        try:
            iterator = iter(self._produce())
            for item in iterator:
                if self.stopped.is_set():
                    return
                self._deliver(item, None)
        except BaseException as exc:  # handed over to the consumer
            self._deliver(END, exc)
        else:
            self._deliver(END, None)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        self.stopped.set()


def in_thread(produce: Callable[[], Iterable[Any]], *, deadline_s: float | None = None,
              poll_s: float | None = None, cancel: threading.Event | None = None,
              name: str = "qabot-worker") -> Iterator[Any]:
    """Iterate `produce()` in a worker thread, yielding its items here.

    `deadline_s`: raise TimeoutError once that long has passed since the start, whatever the
    producer is doing. `poll_s`: wait in slices of this length, so that the main thread notices
    Ctrl-C at once (an abandoned call finishes in the background, unseen). `cancel`: raise
    KeyboardInterrupt here within `poll_s` of it being set (a signal handler that only sets an
    event cannot interrupt anything half-done). Closing the returned iterator stops the worker at
    its next item.
    """
    items: queue.Queue = queue.Queue()
    worker = Worker(produce, lambda item, error: items.put((item, error)), name=name)
    deadline = time.monotonic() + deadline_s if deadline_s is not None else None
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            wait = poll_s
            if deadline is not None:
                remaining = max(deadline - time.monotonic(), 0)
                wait = remaining if wait is None else min(wait, remaining)
            try:
                item, error = items.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"did not finish within {deadline_s:g} s") from None
                continue
            if error is not None:
                raise error
            if item is END:
                return
            yield item
    finally:
        worker.close()


def call_in_thread(fn: Callable[..., Any], *args, poll_s: float | None = None, deadline_s: float | None = None) -> Any:
    """fn(*args) in a worker thread (see `in_thread`): its value, or its exception raised here."""
    (value,) = in_thread(lambda: [fn(*args)], poll_s=poll_s, deadline_s=deadline_s)
    return value
