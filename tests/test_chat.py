"""`qabot chat`: the REPL in a pseudo-terminal, piped questions, LLM streaming, Ctrl-C."""
import _thread
import io
import os
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
        assert "[1] Russia to leave the International Space Station" in out and "[2]" in out

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
    assert answer.answerer == "llm:fake" and answer.text == SUPPORTED
    streamed = plain(output)
    assert "Borisov succeeded" in streamed and "build a base on the Moon" in streamed  # deltas were shown
    final = after_live(output)
    assert "Moon" not in final and SUPPORTED in final
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
