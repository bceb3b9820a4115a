"""`qabot chat`: the REPL in a pseudo-terminal, piped questions, LLM streaming, Ctrl-C."""
import _thread
import io
import os
import random
import re
import subprocess
import sys
import threading
import time

import pexpect
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from rich.console import Console

from bot.qa.pipeline import QA
from bot.cli.chat import MAX_TURNS, Chat
from bot.config import history_path
from bot.qa.llm.answerer import LLMAnswerer
from bot.schema import Answer
from conftest import REPO

LOAD_TIMEOUT = 120  # model load on a busy machine
ANSWER_TIMEOUT = 60
FULL_PASSAGE_ONLY = "By then, Russia will begin building its own space station"  # not in the short quote
# The prompt "> " as prompt_toolkit draws it: the space may be a cursor move instead.
PROMPT = re.compile(r">(?: |\x08\x1b\[\d*C)")
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r|\x07")


def chat_args(settings) -> list[str]:
    return ["-m", "bot", "chat", "--corpus", str(settings.corpus), "--index", str(settings.index)]


def chat_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}
    env.update(QABOT_HISTORY_FILE=str(tmp_path / "state" / "history"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", COLUMNS="200",
               LINES="50")
    return env


def plain(text: str) -> str:
    """Terminal output without escape sequences, whitespace collapsed (so wrapping doesn't matter)."""
    return " ".join(_ESCAPE.sub("", text).split())


class Terminal:
    """A `qabot chat` in a pseudo-terminal; `screen` is everything it printed, as plain text."""

    def __init__(self, settings, tmp_path) -> None:
        self.log = io.StringIO()
        self.child = pexpect.spawn(sys.executable, chat_args(settings), cwd=str(REPO), env=chat_env(tmp_path),
                                   dimensions=(50, 200), encoding="utf-8", timeout=ANSWER_TIMEOUT)
        self.child.logfile_read = self.log

    @property
    def screen(self) -> str:
        return plain(self.log.getvalue())

    def wait_for_prompt(self, after: str, timeout=ANSWER_TIMEOUT) -> str:
        """Wait for `after` to be printed and the prompt to follow; return the output since."""
        mark = len(self.log.getvalue())
        self.child.expect_exact(after, timeout=timeout)
        self.child.expect(PROMPT, timeout=timeout)
        return plain(self.log.getvalue()[mark:])

    def send(self, line: str, then: str) -> str:
        mark = len(self.log.getvalue())
        self.child.sendline(line)
        self.wait_for_prompt(then)
        return plain(self.log.getvalue()[mark:])


@pytest.fixture(scope="module")
def idle_terminal(iss_index, tmp_path_factory):
    """A second chat for the Ctrl-D test, started with the first so their model loads overlap."""
    term = Terminal(iss_index, tmp_path_factory.mktemp("idle"))
    yield term
    if term.child.isalive():
        term.child.terminate(force=True)


def test_chat_in_a_terminal(iss_index, idle_terminal, tmp_path):
    started = time.monotonic()
    term = Terminal(iss_index, tmp_path)
    try:
        term.wait_for_prompt("Ctrl-D to quit", timeout=LOAD_TIMEOUT)
        assert "Loading…" in term.screen
        loaded = time.monotonic()

        # Ctrl-C at the prompt clears the line: nothing is asked.
        term.child.send("half a question")
        term.child.sendcontrol("c")
        term.child.expect(PROMPT)

        out = term.send("who is the new president of roscosmos?", then="Sources")
        assert "Borisov" in out and "[1]" in out
        assert "Understood as" not in out

        out = term.send("who did he replace?", then="Sources")
        assert "Understood as: who did he replace? (who is the new president of roscosmos?" in out
        assert "Rogozin" in out

        out = term.send("/sources", then=FULL_PASSAGE_ONLY)
        # Both passages are of the one article: its title once, then [1] and [2] under it.
        assert out.count("Russia to leave the International Space Station after 2024") == 1
        assert "(russia-iss-withdrawal.txt) [1]" in out and " [2] " in out

        term.send("/reset", then="New conversation")
        term.send("/sources", then="No sources yet")
        out = term.send("/help", then="/quit")
        assert "/sources" in out and "/reset" in out and "Ctrl-C" in out
        term.send("/nonsense", then="Unknown command /nonsense")

        term.child.sendline("/quit")
        term.child.expect_exact("Bye.")
        term.child.expect(pexpect.EOF, timeout=30)
        term.child.close()
        assert term.child.exitstatus == 0
        history = (tmp_path / "state" / "history").read_text()
        assert history.count("who did he replace?") == 1 and "half a question" not in history
        print(f"load {loaded - started:.1f} s, session {time.monotonic() - loaded:.1f} s")
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)


def test_ctrl_d_says_bye_and_exits_cleanly(idle_terminal):
    term = idle_terminal
    term.wait_for_prompt("Ctrl-D to quit", timeout=LOAD_TIMEOUT)
    term.child.sendcontrol("d")
    term.child.expect_exact("Bye.")
    term.child.expect(pexpect.EOF, timeout=30)
    term.child.close()
    assert term.child.exitstatus == 0


SPINNER = re.compile("[\u2800-\u28ff]|Thinking")  # rich's "dots" frames are braille characters


def quiet_for(term: Terminal, seconds: float) -> str:
    """Everything the chat prints during the next `seconds` (raw, escapes included)."""
    mark = len(term.log.getvalue())
    term.child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=seconds)
    return term.log.getvalue()[mark:]


@pytest.mark.slow  # ~25 s: the model load and 30 questions
def test_ctrl_c_at_any_moment_of_an_answer_leaves_a_clean_prompt(iss_index, tmp_path):
    """Ctrl-C at random moments while questions are answered (the spinner starting, running,
    stopping, the answer printing): each time the prompt comes back with no spinner left running
    behind it, and nothing is drawn after "Bye."."""
    term = Terminal(iss_index, tmp_path)
    rng = random.Random(12)
    try:
        term.wait_for_prompt("Ctrl-D to quit", timeout=LOAD_TIMEOUT)
        started = time.monotonic()
        term.send("when will russia leave the iss?", then="Sources")
        answer_s = time.monotonic() - started  # how long one answer takes here, printing included
        cancelled = 0
        for i in range(30):
            mark = len(term.log.getvalue())
            term.child.sendline(f"when will russia leave the iss? ({i})")
            # Two in three around when the spinner starts (where the race was); the rest anywhere.
            time.sleep(rng.uniform(0.03, 0.15) if i % 3 else rng.uniform(0, 1.2 * answer_s))
            term.child.sendcontrol("c")
            # A command after the Ctrl-C: its reply and the prompt after it show the chat is back.
            term.send(f"/check-{i}", then=f"Unknown command /check-{i}")
            after = quiet_for(term, 0.25)  # the spinner redraws every 80 ms
            assert not SPINNER.search(after), f"Ctrl-C {i}: the spinner still runs after the prompt: {after!r}"
            cancelled += "Cancelled." in plain(term.log.getvalue()[mark:])
        assert cancelled >= 5, f"only {cancelled} of 30 Ctrl-C's landed during an answer"
        term.child.sendline("/quit")
        term.child.expect_exact("Bye.")
        mark = len(term.log.getvalue())
        term.child.expect(pexpect.EOF, timeout=30)
        after = term.log.getvalue()[mark:]
        assert not plain(after) and not SPINNER.search(after), f"drawn after Bye.: {after!r}"
        term.child.close()
        assert term.child.exitstatus == 0
        print(f"{cancelled} of 30 Ctrl-C's cancelled an answer (one answer: {answer_s:.2f} s)")
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)


def test_piped_questions_are_answered_in_plain_text(iss_index, tmp_path):
    run = subprocess.run([sys.executable, *chat_args(iss_index)], cwd=REPO, env=chat_env(tmp_path),
                         input="when will russia leave the iss?\n\n/sources\n/quit\nwho is the new president?\n",
                         capture_output=True, text=True, timeout=LOAD_TIMEOUT)
    assert run.returncode == 0, run.stderr
    assert "Q: when will russia leave the iss?" in run.stdout
    assert "after 2024" in run.stdout.lower()
    assert FULL_PASSAGE_ONLY in run.stdout  # /sources
    assert "who is the new president" not in run.stdout  # after /quit
    assert "\x1b[" not in run.stdout  # no colour when not a terminal
    assert "Loading…" in run.stderr


# --- in-process: streaming, cancelling, history -------------------------------------------------

SUPPORTED = "Borisov succeeded Rogozin as the president of Roscosmos [1][2][3]."
INVENTED = "Russia will partner with China to build a base on the Moon [1]."


def llm_qa(settings, embedder, reply: str) -> QA:
    """QA with a fake chat model that streams `reply` word by word."""
    fake = LLMAnswerer(GenericFakeChatModel(messages=iter([reply])), name="llm:fake", timeout_s=10)
    return QA(settings, embedder=embedder, llm_answerer=fake)


def terminal_console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None, highlight=False)


def after_live(output: str) -> str:
    """What stays on screen once the live (streamed) text is erased: the output after the last
    cursor-up that erased it."""
    return plain(output.rsplit("\x1b[1A", 1)[-1])


def test_llm_answer_streams_then_is_replaced_by_the_verified_answer(iss_index, embedder):
    console = terminal_console()
    chat = Chat(llm_qa(iss_index, embedder, f"{SUPPORTED} {INVENTED}"), console, interactive=True)
    answer = chat.ask("who did Borisov succeed?")
    output = console.file.getvalue()
    # Only the markers of the passages that state the sentence in one window stay.
    shown = answer.text
    assert answer.answerer == "llm:fake" and shown.startswith("Borisov succeeded Rogozin as the president of Roscosmos [1]")
    assert "[3]" not in shown and "Moon" not in shown
    streamed = plain(output)
    assert "Borisov succeeded" in streamed and "build a base on the Moon" in streamed  # deltas were shown
    final = after_live(output)
    assert "Moon" not in final and shown in final
    assert "Sources" in final and "could not be checked" not in final


def test_unverifiable_llm_answer_falls_back_to_extractive(iss_index, embedder):
    console = terminal_console()
    chat = Chat(llm_qa(iss_index, embedder, INVENTED), console, interactive=True)
    answer = chat.ask("who did Borisov succeed?")
    assert answer.answerer == "extractive" and "Rogozin" in answer.text
    assert "Moon" in plain(console.file.getvalue())
    final = after_live(console.file.getvalue())
    assert "Moon" not in final and "could not be checked" in final and "Rogozin" in final


class SlowQA:
    """Answers after `release` is set; records the history it was given."""

    llm_answerer = None

    def __init__(self) -> None:
        self.release = threading.Event()
        self.histories = []

    def answer(self, question, history=None, k=None):
        self.histories.append(list(history or []))
        self.release.wait(10)
        return Answer(question=question, text=f"answer to {question}", refused=False)


def test_ctrl_c_abandons_the_answer_and_returns_to_the_prompt():
    slow = SlowQA()
    console = Console(file=io.StringIO(), width=120)
    chat = Chat(slow, console, interactive=True)
    threading.Timer(0.3, _thread.interrupt_main).start()
    started = time.monotonic()
    assert chat.ask("a slow question") is None
    assert time.monotonic() - started < 2
    assert "Cancelled." in console.file.getvalue() and chat.turns == []
    slow.release.set()  # the abandoned call finishes unseen; the next question works
    assert chat.ask("next").text == "answer to next"


class StreamingQA(SlowQA):
    """Like SlowQA, with an LLM: streams two deltas, then the answer."""

    llm_answerer = object()

    def stream(self, question, history=None, k=None):
        yield "answer "
        yield "streaming"
        yield self.answer(question, history)


@pytest.mark.parametrize("qa", [SlowQA, StreamingQA])
def test_ctrl_c_while_the_spinner_starts_leaves_no_spinner_running(monkeypatch, qa):
    """The race the pseudo-terminal test samples, made certain: Ctrl-C arrives just as rich has
    started the spinner's refresh thread, before the `with` block is entered."""
    from rich import live

    start = live._RefreshThread.start

    def start_then_ctrl_c(thread):
        start(thread)
        _thread.interrupt_main()

    monkeypatch.setattr(live._RefreshThread, "start", start_then_ctrl_c)
    slow = qa()
    slow.release.set()
    console = terminal_console()
    chat = Chat(slow, console, interactive=True)
    assert chat.ask("a question") is None
    shown = console.file.getvalue()
    assert plain(shown).endswith("Cancelled.")
    assert shown.rfind("\x1b[?25h") > shown.rfind("\x1b[?25l"), "the cursor is left hidden"
    time.sleep(0.3)  # a spinner left running would redraw meanwhile
    assert console.file.getvalue() == shown, "the spinner still runs after the Ctrl-C"
    monkeypatch.undo()
    assert chat.ask("next").text == "answer to next"  # and the next question has a working display


def test_conversation_keeps_the_last_turns_and_reset_forgets_them():
    slow = SlowQA()
    slow.release.set()
    chat = Chat(slow, Console(file=io.StringIO()))
    for i in range(MAX_TURNS + 2):
        chat.handle(f"question {i}")
    assert [t.question for t in slow.histories[-1]] == [f"question {i}" for i in range(1, MAX_TURNS + 1)]
    assert len(chat.turns) == MAX_TURNS and chat.turns[-1].answer == f"answer to question {MAX_TURNS + 1}"
    assert chat.handle("/reset") and chat.turns == [] and chat.last is None
    chat.handle("again")
    assert slow.histories[-1] == []
    assert chat.handle("/exit") is False and chat.handle("/quit") is False


def test_history_file_location(monkeypatch, tmp_path):
    monkeypatch.delenv("QABOT_HISTORY_FILE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert history_path() == tmp_path / "qabot" / "history"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert history_path() == tmp_path / "home" / ".local" / "state" / "qabot" / "history"
    monkeypatch.setenv("QABOT_HISTORY_FILE", str(tmp_path / "h"))
    assert history_path() == tmp_path / "h"
