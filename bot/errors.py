"""Errors the user can act on. One base class: every front end shows its message as one line
(the CLI: "Error: …" on stderr, exit 2; Discord: the message as the reply) and never a traceback.

Anything else that escapes is a bug and is reported as one.
"""
from __future__ import annotations


class QabotError(Exception):
    """A problem the user can fix; the message is one line meant for them."""


class IndexProblem(QabotError):
    """The index cannot be used as asked: missing, built differently, or its server unreachable."""


class CorpusMissing(IndexProblem):
    """A corpus folder or file that was named does not exist."""


class IndexDamaged(IndexProblem):
    """A file of the index cannot be read as what it should be (garbage, truncation)."""


class RemovalRefused(IndexProblem):
    """An ingest would remove every document of the index, or most of them, and that was not confirmed."""


class NoDocuments(IndexProblem):
    """A corpus (or index) with nothing that can be indexed in it."""


class QuestionError(QabotError):
    """A question we won't run (empty, too long)."""


class LLMConfigError(QabotError):
    """The configured LLM cannot be set up (bad spec, missing package, missing key)."""


class GoldError(QabotError):
    """A gold file that cannot be read or is malformed."""


class UploadRefused(QabotError):
    """A file given to the Discord bot that will not be added: too large, of another type than
    its name says, or one the documents cannot hold."""


class SettingError(QabotError):
    """A setting (environment variable or flag) with a value that cannot be used."""


def damaged(path, reason: str) -> IndexDamaged:
    """The one message for an index file that cannot be read: which file, why, and the way out."""
    return IndexDamaged(f"{path} is damaged ({reason}); run `qabot ingest --rebuild`")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (whitespace folded, cut at `limit`), for users: never
    its class name (an exception without a message says what kind of failure it was in words)."""
    text = " ".join(str(exc).split())
    if not text:
        strerror = getattr(exc, "strerror", None)
        if strerror:
            text = strerror
        elif isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
            text = "timed out"
        elif isinstance(exc, (ConnectionError, EOFError)):
            text = "connection lost"
        else:
            text = "no details given"
    return text[:limit]


def describe(exc: BaseException) -> str:
    """`ClassName: first line`, for logs and for errors that are not the user's to fix."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
