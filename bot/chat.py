"""`qabot chat`: ask questions one after another, follow-ups included, in a terminal.

On a terminal it is a prompt_toolkit REPL with persistent history; with questions piped in
(one per line) it answers each and prints plain text, so it can be scripted. Either way the
conversation is a `list[Turn]` handed to `QA.answer`, which condenses follow-ups.

Only click and the standard library are imported at the top so `qabot --help` stays instant;
rich, prompt_toolkit and the models load when the command runs. The click command is built on
first access (`chat_command`, see `__getattr__` below) because it reuses bot.cli's option
decorators and bot.cli registers it while bot.cli itself is still being imported.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import click

MAX_TURNS = 6  # earlier exchanges kept for follow-ups
POLL_S = 0.1  # how often the main thread checks on the worker (and so notices Ctrl-C)
PROMPT = "> "

HELP = """\
Ask a question about the documents; then ask follow-ups ("who did he replace?").
  /sources   the full passages behind the last answer
  /reset     forget the conversation and start a new topic
  /help      this help
  /quit      leave (also /exit or Ctrl-D)
Ctrl-C cancels a question while it is being answered."""


def history_path() -> Path:
    """Where the prompt history is kept: $QABOT_HISTORY_FILE, else the user state directory."""
    explicit = os.environ.get("QABOT_HISTORY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "qabot" / "history"


class Chat:
    """One conversation: reads a line (question or /command), answers it, remembers the turn.

    Independent of how lines arrive: `run_interactive` and `run_piped` feed it.
    """

    def __init__(self, qa, console, interactive: bool = False) -> None:
        self.qa = qa
        self.console = console
        self.interactive = interactive  # spinner, streaming, cancellable worker
        self.turns: list = []  # list[Turn], most recent last
        self.last = None  # the last Answer, for /sources
        self.failures = 0  # unexpected errors while answering (piped mode exits 1 if any)

    def handle(self, line: str) -> bool:
        """Act on one input line; False when the user asked to quit."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line)
        self.ask(line)
        return True

    def command(self, line: str) -> bool:
        from rich.text import Text

        from bot.terminal import print_sources

        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            self.console.print(HELP, markup=False, highlight=False)
        elif name == "/reset":
            self.turns.clear()
            self.last = None
            self.console.print(Text("New conversation: earlier questions are forgotten.", style="dim"))
        elif name == "/sources":
            if self.last is None or not self.last.citations:
                self.console.print(Text("No sources yet: ask a question first.", style="dim"))
            else:
                print_sources(self.console, self.last, full=True)
        else:
            self.console.print(Text(f"Unknown command {name}; /help lists the commands.", style="yellow"))
        return True

    def ask(self, question: str):
        """Answer `question` in the context of the conversation and print it; the Answer, or None
        if it was rejected, failed or cancelled."""
        from rich.text import Text

        from bot.answer import QuestionError
        from bot.schema import Turn
        from bot.terminal import print_answer

        history = list(self.turns)
        try:
            if self.interactive and self.qa.llm_answerer is not None:
                answer = render_stream(self.console, in_worker_stream(stream_answer, self.qa, question, history))
            elif self.interactive:
                with self.console.status("Thinking…", spinner="dots"):
                    answer = in_worker(self.qa.answer, question, history)
            else:
                answer = self.qa.answer(question, history)
        except QuestionError as exc:
            self.console.print(Text(str(exc), style="red"))
            return None
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            self.console.print(Text("Cancelled.", style="dim"))
            return None
        except Exception as exc:  # keep the session alive; the user can ask again
            self.failures += 1
            first_line = (str(exc).strip().splitlines() or [""])[0]
            self.console.print(Text(f"Error: {type(exc).__name__}: {first_line}", style="red"))
            return None
        if answer.standalone_question:
            self.console.print(Text(f"Understood as: {answer.standalone_question}", style="dim"))
        print_answer(self.console, answer)
        self.console.print()
        self.last = answer
        self.turns.append(Turn(question=answer.question, answer=answer.text))
        del self.turns[:-MAX_TURNS]
        return answer


# --- running work off the main thread, so Ctrl-C can abandon it ---------------------------------

def in_worker(fn: Callable, *args):
    """fn(*args) in a daemon thread. The main thread waits in short slices, so Ctrl-C raises
    KeyboardInterrupt here at once; the abandoned call finishes in the background, unseen."""
    done = threading.Event()
    result: dict = {}

    def work() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, daemon=True, name="qabot-chat-answer").start()
    while not done.wait(POLL_S):
        pass
    if "error" in result:
        raise result["error"]
    return result["value"]


def in_worker_stream(produce: Callable[..., Iterable], *args) -> Iterator:
    """Iterate produce(*args) in a daemon thread, yielding its items here. Closing this iterator
    (or Ctrl-C while waiting) stops the worker at its next item and closes its generator."""
    items: queue.Queue = queue.Queue()
    stop = threading.Event()
    end = object()

    def work() -> None:
        iterator = iter(produce(*args))
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put((True, item))
            items.put((True, end))
        except BaseException as exc:
            items.put((False, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    threading.Thread(target=work, daemon=True, name="qabot-chat-stream").start()
    try:
        while True:
            try:
                ok, item = items.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()


# --- streaming LLM answers -----------------------------------------------------------------------

def stream_answer(qa, question: str, history: list | None = None, k: int | None = None) -> Iterator:
    """The LLM answer as it is written: text deltas (unverified), then one final Answer (see
    `QA.stream`, the shared path)."""
    yield from qa.stream(question, history, k)


def render_stream(console, items: Iterable):
    """Show text deltas as they arrive (a spinner until the first), then clear them and return
    the final Answer for the caller to print: the verified text replaces the streamed one."""
    from rich.live import Live
    from rich.spinner import Spinner
    from rich.text import Text

    streamed = Text()
    final = None
    with Live(Spinner("dots", "Thinking…"), console=console, transient=True, refresh_per_second=10) as live:
        try:
            for item in items:
                if isinstance(item, str):
                    streamed.append(item)
                    live.update(streamed, refresh=True)
                else:
                    final = item
        finally:
            live.update(Text(""), refresh=True)  # erase the unverified text, however long
    if final is None:
        raise RuntimeError("the answer stream ended without an answer")
    if final.answerer == "extractive" and streamed:
        console.print(Text("The model's answer could not be checked against the passages; "
                           "showing the passages' own words instead.", style="dim"))
    return final


# --- front ends ------------------------------------------------------------------------------------

def run_interactive(chat: Chat, history_file: Path) -> None:
    """The REPL: prompt with persistent history until /quit or Ctrl-D."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    try:
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history_file.touch(exist_ok=True)
        history = FileHistory(str(history_file))
    except OSError as exc:
        chat.console.print(f"[yellow]Prompt history not saved ({history_file}: {exc.strerror}).[/]")
        history = InMemoryHistory()
    session = PromptSession(history=history)
    while True:
        try:
            line = session.prompt(PROMPT)
        except KeyboardInterrupt:  # at the prompt: clear the line
            continue
        except EOFError:
            break
        try:
            if not chat.handle(line):
                break
        except KeyboardInterrupt:  # while printing
            chat.console.print("[dim]Cancelled.[/]")
    chat.console.print("Bye.")


def run_piped(chat: Chat, lines: Iterable[str]) -> None:
    """One question (or /command) per line, each answered in turn; stops at EOF or /quit."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if not line.startswith("/"):
            chat.console.print(f"Q: {line}", markup=False, highlight=False)
        if not chat.handle(line):
            break
        sys.stdout.flush()


def load_qa(settings, console):
    """open_qa (ingesting first if needed) and the model warm-up, behind a "Loading…" line."""
    from bot.cli import open_qa
    from bot.index import corpus_changed

    if console.is_terminal:
        status = console.status("Loading…", spinner="dots")
        status.start()
    else:
        click.echo("Loading…", err=True)
        status = None
    try:
        if status is not None and settings.corpus.exists() and corpus_changed(settings):
            status.stop()  # ingest draws its own progress bar
            status = None
        qa = open_qa(settings)
        if status is None and console.is_terminal:
            status = console.status("Loading…", spinner="dots")
            status.start()
        qa.warm_up()
        return qa
    finally:
        if status is not None:
            status.stop()


def _build_command() -> click.Command:
    from bot.cli import CONTEXT, llm_option, location_options

    @click.command("chat", context_settings=CONTEXT)
    @location_options
    @click.option("-k", "k", type=click.IntRange(1, 50), default=None, envvar="QABOT_K",
                  help="Passages to consider (default 5). [env: QABOT_K]")
    @llm_option
    def chat_command(corpus, index_dir, chroma_url, k, llm):
        """Ask questions interactively, with follow-ups ("who did he replace?").

        \b
        Commands: /sources (full passages of the last answer), /reset (forget the
        conversation), /help, /quit. Ctrl-C cancels an answer, Ctrl-D quits.
        Prompt history: $QABOT_HISTORY_FILE, default ~/.local/state/qabot/history.
        With questions piped in (one per line), answers each in plain text and exits.
        """
        from rich.console import Console

        from bot.cli import make_settings

        settings = make_settings(corpus, index_dir, chroma_url, k=k, llm=llm)
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
        qa = load_qa(settings, console)
        chat = Chat(qa, console, interactive=interactive)
        if interactive:
            console.print("[dim]Ask about your documents. /help for commands, Ctrl-D to quit.[/]")
            run_interactive(chat, history_path())
        else:
            run_piped(chat, sys.stdin)
            if chat.failures:
                sys.exit(1)

    return chat_command


def __getattr__(name: str):
    if name == "chat_command":
        command = _build_command()
        # Importing bot.cli while building may have built and registered one already: keep that.
        return globals().setdefault("chat_command", command)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
