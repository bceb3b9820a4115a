"""The LLM answerer through the front doors, on a small ISS index.

`qabot ask --llm openai:test-model --json` talks to the fake OpenAI-compatible server of
tests/fake_openai.py (OPENAI_BASE_URL, OPENAI_API_KEY=dummy) with the real ChatOpenAI client:
a cited answer is kept, a server error falls back to the extractive answer, an invented citation
is removed. `QA.stream` is checked with a GenericFakeChatModel, and `qabot discord` hands the
bot a `stream_fn` only when an LLM is configured.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

from bot.qa.pipeline import QA  # noqa: E402
from bot.cli.main import cli  # noqa: E402
from bot.qa.llm.answerer import LLMAnswerer  # noqa: E402
from bot.schema import Answer  # noqa: E402

QUESTION = "When will Russia leave the ISS?"
WITHDRAW = "Russia has decided to withdraw from the International Space Station after 2024"
INFORM = "Russia will inform its partners of its decision one year in advance"


def ask_json(iss_index, question: str = QUESTION) -> dict:
    result = CliRunner().invoke(
        cli, ["ask", question, "--llm", "openai:test-model", "--json",
              "--corpus", str(iss_index.corpus), "--index", str(iss_index.index)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # exactly one JSON object


def passages_sent(server: FakeOpenAI) -> list[str]:
    prompt = server.requests[-1]["messages"][-1]["content"]
    return re.findall(r'<passage n="\d+">\n(.*?)\n</passage>', prompt, re.DOTALL)


def markers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\[(\d+)\]", text)]


def citation_with(data: dict, n: int) -> dict:
    (c,) = [c for c in data["citations"] if c["n"] == n]
    return c


def test_ask_llm_good_cited_answer(iss_index, openai_env):
    openai_env.script(f"{WITHDRAW} [1]. {INFORM} [2].")
    data = ask_json(iss_index)
    assert data["answerer"] == "llm:openai:test-model" and data["refused"] is False
    (request,) = openai_env.requests
    assert request["model"] == "test-model"
    passages = passages_sent(openai_env)
    # Three of the top k=5 passages (those whose best sentence is nearest the question), each cut
    # to the sentences nearest the question, numbered for the model.
    assert len(passages) == 3 and all(len(p.split("Text:\n")[1]) < 600 for p in passages)
    assert "after 2024" in passages[0]
    assert data["answer"] == f"{WITHDRAW} [1]. {INFORM} [2]."
    assert sorted(set(markers(data["answer"]))) == [c["n"] for c in data["citations"]] == [1, 2]
    # Every [n] points to the citation whose quote says it.
    assert "withdraw from the International Space Station plan after 2024" in citation_with(data, 1)["quote"]
    assert "one year in advance" in citation_with(data, 2)["quote"]
    assert all(c["source"] == "russia-iss-withdrawal.txt" for c in data["citations"])
    assert {"llm", "verify", "total"} <= set(data["timings_ms"])


def test_ask_llm_server_error_falls_back_to_extractive(iss_index, openai_env):
    openai_env.script(status=500)
    started = time.monotonic()
    data = ask_json(iss_index)
    assert data["answerer"] == "extractive" and data["refused"] is False
    assert data["fallback_reason"].startswith("failed (")  # the server's 500, in the JSON
    assert data["answer"].lower().startswith("after 2024")
    assert markers(data["answer"]) and set(markers(data["answer"])) <= {c["n"] for c in data["citations"]}
    assert len(openai_env.requests) == 1  # no retries
    assert time.monotonic() - started < 30  # no waiting on the 60 s time-out (loading the index dominates: 10 s under load)


def test_ask_llm_invented_citation_removed(iss_index, openai_env):
    openai_env.script(f"{WITHDRAW} [1][9]. Russia will partner with China to build a base on the Moon [9].")
    data = ask_json(iss_index)
    assert data["answerer"] == "llm:openai:test-model"
    assert data["answer"] == f"{WITHDRAW} [1]."  # [9] gone, and the sentence only it "supported" too
    assert "[9]" not in data["answer"] and "Moon" not in data["answer"]
    assert [c["n"] for c in data["citations"]] == [1]


# --- QA.stream with a fake chat model -------------------------------------------------------


def fake_qa(iss_index, embedder, reply: str) -> QA:
    model = GenericFakeChatModel(messages=iter([reply]))
    return QA(iss_index, embedder=embedder, llm_answerer=LLMAnswerer(model, name="llm:fake", embed=embedder.embed))


def test_qa_stream_yields_deltas_then_the_verified_answer(iss_index, embedder):
    reply = f"{WITHDRAW} [1]. Russia will partner with China to build a base on the Moon [1]."
    *deltas, final = fake_qa(iss_index, embedder, reply).stream(QUESTION)
    assert len(deltas) > 5 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == reply  # the unverified text, as written
    assert isinstance(final, Answer) and final.answerer == "llm:fake"
    assert final.text == f"{WITHDRAW} [1]."  # the unsupported sentence is gone from the final answer
    assert final.question == QUESTION and "after 2024" in final.citations[0].quote
    assert {"llm", "verify", "total"} <= set(final.timings_ms)


def test_qa_stream_falls_back_to_the_extractive_answer(iss_index, embedder):
    *deltas, final = fake_qa(iss_index, embedder, "Russia will build a base on the Moon [1].").stream(QUESTION)
    assert deltas and "".join(deltas) == "Russia will build a base on the Moon [1]."
    assert final.answerer == "extractive" and final.text.lower().startswith("after 2024")


def test_qa_stream_without_llm_yields_only_the_answer(iss_index, embedder):
    (final,) = QA(iss_index, embedder=embedder).stream(QUESTION)
    assert isinstance(final, Answer) and final.answerer == "extractive"


# --- qabot discord hands the bot a stream_fn with an LLM --------------------------------------


def _discord_wiring(monkeypatch, iss_index, llm: str | None) -> dict:
    import bot.discord_bot.client as client

    captured: dict = {}

    def fake_run_bot(token, answer_fn, reindex_fn, config, warm_up=None, stream_fn=None):
        captured.update(answer_fn=answer_fn, stream_fn=stream_fn, warm_up=warm_up)

    monkeypatch.setattr(client, "run_bot", fake_run_bot)
    monkeypatch.setenv("DISCORD_TOKEN", "dummy-token")
    monkeypatch.setenv("QABOT_CORPUS", str(iss_index.corpus))
    monkeypatch.setenv("QABOT_INDEX", str(iss_index.index))
    if llm:
        monkeypatch.setenv("QABOT_LLM", llm)
    bot_logger = logging.getLogger("bot")
    monkeypatch.setattr(bot_logger, "level", bot_logger.level)  # the command raises it to INFO
    result = CliRunner().invoke(cli, ["discord"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return captured


def test_discord_command_streams_only_with_an_llm(iss_index, openai_env, monkeypatch):
    assert _discord_wiring(monkeypatch, iss_index, None)["stream_fn"] is None
    wired = _discord_wiring(monkeypatch, iss_index, "openai:test-model")
    openai_env.script(f"{WITHDRAW} [1].")
    *deltas, final = wired["stream_fn"](QUESTION, [])
    assert "".join(deltas) == f"{WITHDRAW} [1]." and openai_env.requests[-1]["stream"] is True
    assert final.answerer == "llm:openai:test-model" and final.text == f"{WITHDRAW} [1]."

    from bot.errors import QuestionError as UserFacingError

    with pytest.raises(UserFacingError):
        list(wired["stream_fn"]("   ", []))


def test_ask_llm_verified_but_off_question_falls_back(iss_index, openai_env):
    """Issue #17: a sentence the passages state is not yet an answer. Qwen 0.5B answered "who did
    Borisov replace?" with a copied sentence about Russia leaving the ISS; the extractive answer
    (Rogozin) is shown instead, and the JSON says why."""
    openai_env.script(f"{WITHDRAW} [1].")
    data = ask_json(iss_index, "who did borisov replace?")
    assert data["answerer"] == "extractive" and "Rogozin" in data["answer"]
    assert data["fallback_reason"] == "its answer disagrees with the extractive answer (Rogozin)"


def test_eval_counts_fallbacks(iss_index, openai_env, tmp_path, caplog):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "q1", "question": "who did borisov replace?", "answers": ["Rogozin"],
                                "evidence": None, "source": "russia-iss-withdrawal.txt", "kind": "who"}) + "\n")
    openai_env.script(f"{WITHDRAW} [1].")
    where = ["--corpus", str(iss_index.corpus), "--index", str(iss_index.index)]
    result = CliRunner().invoke(cli, ["eval", "--gold", str(gold), "--llm", "openai:test-model", "--json", *where])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metrics"]["llm_fallbacks"] == 1 and data["metrics"]["llm_answers"] == 0
    assert data["fallback_reasons"] == {"its answer disagrees with the extractive answer": 1}
    assert data["items"][0]["fallback_reason"].startswith("its answer disagrees")
    gold.write_text("".join(gold.read_text().replace('"q1"', f'"q{n}"') for n in (1, 2, 3)))  # one session, 3 fallbacks
    caplog.clear()
    with caplog.at_level("DEBUG"):
        table = CliRunner().invoke(cli, ["eval", "--gold", str(gold), "--llm", "openai:test-model", *where])
    assert "fell back  3: its answer disagrees with the extractive answer" in table.stdout
    # Told once per session (on bot.notice, which the CLI prints on stderr), not once per question.
    told = [r for r in caplog.records if r.name == "bot.notice" and "answered without it" in r.getMessage()]
    assert len(told) == 1 and told[0].levelname == "WARNING"


def test_ask_llm_does_not_answer_where_the_extractive_answerer_refuses(iss_index, openai_env):
    """Qwen 0.5B answered "when will NASA leave the ISS?" with Russia's 2024, from a passage
    that states it: an LLM answer is only shown where it can be checked against an extractive one."""
    openai_env.script(f"{WITHDRAW} [1].")
    data = ask_json(iss_index, "when will nasa leave the iss?")
    assert data["refused"] is True and data["answerer"] == "extractive"
    assert data["fallback_reason"] == "the extractive answerer found no answer to check it against"


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan"])
def test_bad_llm_timeout_is_one_line(value, iss_index, monkeypatch):
    monkeypatch.setenv("QABOT_LLM_TIMEOUT", value)
    result = CliRunner().invoke(cli, ["ask", "q", "--llm", "openai:m", "--corpus", str(iss_index.corpus),
                                      "--index", str(iss_index.index)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert "QABOT_LLM_TIMEOUT" in line and ("positive number" in line or "must be a number" in line)
