"""`qabot chat`: ask questions one after another, follow-ups included, in a terminal.

On a terminal it is a prompt_toolkit REPL with persistent history; with questions piped in
(one per line) it answers each and prints plain text, so it can be scripted. Either way the
conversation is a `list[Turn]` handed to `QA.answer`, which condenses follow-ups.
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from bot.cli.options import CONTEXT, k_option, llm_option, location_options, make_settings
from bot.cli.pipeline import open_qa
from bot.config import history_path
from bot.cli.terminal import make_console, print_answer, print_sources
from bot.errors import QuestionError, one_line
from bot.schema import Turn
from bot.threads import in_thread

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
        history = list(self.turns)
        try:
            if self.interactive:
                answer = self.answer_cancellably(question, history)
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
            self.console.print(Text(f"Error: {one_line(exc)}", style="red"))
            return None
        if answer.standalone_question:
            self.console.print(Text(f"Understood as: {answer.standalone_question}", style="dim"))
        print_answer(self.console, answer)
        self.console.print()
        self.last = answer
        self.turns.append(Turn(question=answer.question, answer=answer.text))
        del self.turns[:-MAX_TURNS]
        return answer

    def answer_cancellably(self, question: str, history: list):
        """The answer, computed in a worker thread behind a spinner (or streamed, with an LLM);
        KeyboardInterrupt if Ctrl-C was pressed meanwhile, with the spinner stopped and erased.

        While the spinner runs, Ctrl-C only sets an event that the waiting loop checks: a
        KeyboardInterrupt raised at an arbitrary point could land inside rich's start or stop of
        the live display (its refresh thread started, the `with` not yet entered) and leave the
        spinner drawing over the prompt, and after exit."""
        cancel = threading.Event()
        with ctrl_c_sets(cancel):
            if self.qa.llm_answerer is not None:
                return render_stream(self.console, cancellable(lambda: self.qa.stream(question, history), cancel))
            with self.console.status("Thinking…", spinner="dots"):
                (answer,) = cancellable(lambda: [self.qa.answer(question, history)], cancel)
            return answer


# --- Ctrl-C while answering ----------------------------------------------------------------------

@contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """Inside the block, SIGINT (Ctrl-C) sets `event` instead of raising KeyboardInterrupt
    wherever the main thread happens to be. Outside the main thread (no signals there) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cancellable(produce: Callable[[], Iterable], cancel: threading.Event, poll_s: float = POLL_S) -> Iterator:
    """The items of `produce()`, iterated in a worker thread (an abandoned one finishes unseen);
    raises KeyboardInterrupt here, at a point of its choosing, within `poll_s` of `cancel` being set."""
    return in_thread(produce, poll_s=poll_s, cancel=cancel, name="qabot-answer")


# --- streaming LLM answers -----------------------------------------------------------------------

def render_stream(console, items: Iterable):
    """Show text deltas as they arrive (a spinner until the first), then clear them and return
    the final Answer for the caller to print: the verified text replaces the streamed one."""
    streamed = Text()
    final = None
    with Live(Spinner("dots", "Thinking…"), console=console, transient=True, refresh_per_second=10) as live:
        try:  # a Ctrl-C arrives as KeyboardInterrupt from `items`, never inside Live (see ctrl_c_sets)
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
    # Imported here: prompt_toolkit costs ~0.25 s of start-up that piped chat and --help never need.
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
    from bot.ingest.status import corpus_changed  # the pipeline's imports cost ~1.3 s: see pipeline.py

    status = None
    try:
        if console.is_terminal:
            status = console.status("Loading…", spinner="dots")
            status.start()  # inside the try: a Ctrl-C in start() still stops it
        else:
            click.echo("Loading…", err=True)
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


@click.command("chat", context_settings=CONTEXT)
@location_options
@k_option
@llm_option
def chat_command(corpus, index_dir, chroma_url, k, llm):
    """Ask questions interactively, with follow-ups ("who did he replace?").

    \b
    Commands: /sources (full passages of the last answer), /reset (forget the
    conversation), /help, /quit. Ctrl-C cancels an answer, Ctrl-D quits.
    Prompt history: $QABOT_HISTORY_FILE, default ~/.local/state/qabot/history.
    With questions piped in (one per line), answers each in plain text and exits.
    """
    settings = make_settings(corpus, index_dir, chroma_url, k=k, llm=llm)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    console = make_console()
    qa = load_qa(settings, console)
    chat = Chat(qa, console, interactive=interactive)
    if interactive:
        console.print("[dim]Ask about your documents. /help for commands, Ctrl-D to quit.[/]")
        run_interactive(chat, history_path())
    else:
        run_piped(chat, sys.stdin)
        if chat.failures:
            sys.exit(1)
