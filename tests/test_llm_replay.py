"""Real small models' replies, replayed: the transcripts in tests/llm_transcripts/ hold what
Qwen2.5-Coder-0.5B-Instruct and Gemma 3 270M (Q4_K_M, llama.cpp) wrote to the answer prompts of
the ISS gold questions and the ISS, phantom-dev, Postfix and Python-docs dev and test questions
(the last two corpora opt-in: QABOT_RUN_PYDOCS=1; re-record with tests/tools/record_llm.py; README "Optional:
answers written by an LLM"). The fake OpenAI server answers each prompt with the reply recorded
for its question and passages, and HTTP 404 for a prompt never recorded (retrieval changed
since): the answer then falls back to the extractive one, as with a failing server.

The guarantee, per set and per model: with the LLM on, answer accuracy is never below the
extractive answerer's, and neither is refusal recall. The live test at the end runs a real llama.cpp server (opt-in: it needs
llama-cpp-python and a GGUF file, see `live_server`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import load_transcript  # noqa: E402

from bot.eval.gold import load_gold  # noqa: E402
from bot.eval.scoring import evaluate  # noqa: E402
from bot.qa.llm.answerer import LLMAnswerer  # noqa: E402
from bot.qa.llm.prompts import prompt_fingerprint  # noqa: E402
from bot.qa.llm.provider import make_chat_model  # noqa: E402
from bot.qa.pipeline import QA  # noqa: E402

TESTS = Path(__file__).parent
TRANSCRIPTS = sorted((TESTS / "llm_transcripts").glob("*.jsonl"))
PHANTOM = TESTS.resolve().parent.parent / "shared" / "data" / "phantom-dev" / "corpus"
POSTFIX = Path("/usr/share/doc/postfix/html")
PYDOCS = Path(os.environ.get("QABOT_PYDOCS_DIR", "/usr/share/doc/python3.11/html/_sources"))
LARGE = pytest.mark.skipif(not os.environ.get("QABOT_RUN_PYDOCS"),
                           reason="ingests a whole Debian doc set (minutes): set QABOT_RUN_PYDOCS=1")
# Set → (its questions, the corpus they are asked of: None for the shipped ISS article). The
# Postfix and Python-docs sets are opt-in: their corpora take 1-4 minutes to ingest.
CORPORA = {"iss": None, "phantom": PHANTOM, "postfix": POSTFIX, "pydocs": PYDOCS}
QUESTIONS = {"iss_gold": (TESTS / "gold" / "iss_qa.jsonl", None)} | {
    f"{name}_{split}": (TESTS / "devsets" / f"{name}_{split}.jsonl", corpus)
    for name, corpus in CORPORA.items() for split in ("dev", "test")}
SETS = [pytest.param(name, marks=[pytest.mark.pydocs, LARGE]) if name.startswith(("postfix", "pydocs")) else name
        for name in QUESTIONS]


def recorded(transcript: Path) -> dict[str, set[str]]:
    """The gold ids recorded in `transcript`, per set."""
    sets: dict[str, set[str]] = {}
    for line in transcript.read_text(encoding="utf-8").splitlines()[1:]:
        entry = json.loads(line)
        sets.setdefault(entry["set"], set()).add(entry["id"])
    return sets


def llm_qa(settings, embedder, model_name: str) -> QA:
    model = make_chat_model(f"openai:{model_name}", timeout_s=30)
    return QA(settings, embedder=embedder,
              llm_answerer=LLMAnswerer(model, name=f"llm:openai:{model_name}", timeout_s=30, embed=embedder.embed))


def test_there_are_transcripts_of_two_models():
    assert len(TRANSCRIPTS) >= 2, [t.name for t in TRANSCRIPTS]


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_was_recorded_with_this_prompt(transcript):
    header, replies = load_transcript(transcript)
    assert header["prompt"] == prompt_fingerprint(), (
        f"the answer prompt changed since {transcript.name} was recorded: re-record it (tests/tools/record_llm.py)")
    assert replies and header["gguf_sha256"]


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory, embedder):
    """corpus → the Settings of it ingested, made once per corpus for this module (both models'
    tests ask the same index)."""
    made: dict[str, object] = {}

    def index(corpus: Path):
        if str(corpus) not in made:
            if not corpus.is_dir():
                pytest.skip(f"corpus not at {corpus}")
            from bot.config import Settings
            from bot.ingest.pipeline import ingest

            settings = Settings(corpus=corpus, index=tmp_path_factory.mktemp("replay") / "index")
            ingest(settings, embedder=embedder)
            made[str(corpus)] = settings
        return made[str(corpus)]
    return index


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("set_name", SETS)
def test_llm_answers_never_below_extractive(transcript, set_name, iss_index, corpus_index, embedder, openai_env):
    """Replayed replies through the whole pipeline: the LLM's answer is shown only when verified
    and in agreement, so answer accuracy with it is at least the extractive answerer's."""
    ids = recorded(transcript).get(set_name)
    if not ids:
        pytest.skip(f"{transcript.stem} has no {set_name} replies")
    questions, corpus = QUESTIONS[set_name]
    settings = iss_index if corpus is None else corpus_index(corpus)
    items = [item for item in load_gold(questions) if item["id"] in ids]
    extractive = evaluate(QA(settings, embedder=embedder), items).metrics
    header, replies = load_transcript(transcript)
    openai_env.replay(replies)
    with_llm = evaluate(llm_qa(settings, embedder, header["model"]), items)
    metrics = with_llm.metrics
    print(transcript.stem, set_name, {"extractive": extractive["answer_accuracy"], "llm": metrics["answer_accuracy"],
                                      "llm_answers": metrics["llm_answers"], "replayed": openai_env.replayed,
                                      "missed": openai_env.missed, "fallbacks": with_llm.fallback_reasons()})
    asked = openai_env.replayed + openai_env.missed
    if asked and openai_env.replayed < asked / 2:
        warnings.warn(f"{transcript.stem}/{set_name}: only {openai_env.replayed} of {asked} prompts were recorded; "
                      "retrieval or excerpting changed since: re-record (tests/tools/record_llm.py)")
    assert metrics["answer_accuracy"] >= extractive["answer_accuracy"]
    # Nor does it answer where the extractive answerer rightly refuses.
    if extractive["refusal_recall"] is not None:
        assert metrics["refusal_recall"] >= extractive["refusal_recall"]
    # Every question the LLM was asked and could not answer came back as the extractive answer,
    # with the reason in the JSON.
    assert metrics["llm_fallbacks"] + metrics["llm_answers"] <= len(items)


# --- a real model, end to end (opt-in, not in CI) ----------------------------------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """llama-cpp-python's server on loopback with LLM_LIVE_GGUF, run by LLM_LIVE_PYTHON (a python
    with llama-cpp-python[server]; never a dependency of qabot)."""
    gguf, python = os.environ.get("LLM_LIVE_GGUF"), os.environ.get("LLM_LIVE_PYTHON")
    if not gguf or not python:
        pytest.skip("set LLM_LIVE_GGUF and LLM_LIVE_PYTHON to run a real model")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "wb")
    server = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "live",
                               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.llm_live
def test_live_model_end_to_end(live_server, iss_index, monkeypatch):
    """`qabot ask --llm` against a real local model: a verified answer or the extractive
    fallback with its reason, never an error; a wrong model name is a one-line error."""
    from click.testing import CliRunner

    from bot.cli.main import cli

    monkeypatch.setenv("OPENAI_BASE_URL", live_server)
    monkeypatch.setenv("QABOT_LLM_TIMEOUT", "300")
    where = ["--corpus", str(iss_index.corpus), "--index", str(iss_index.index)]
    result = CliRunner().invoke(cli, ["ask", "who did borisov replace?", "--llm", "openai:live", "--json", *where])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "rogozin" in data["answer"].lower()
    assert data["answerer"] == "llm:openai:live" or data["fallback_reason"]
    wrong = CliRunner().invoke(cli, ["ask", "q", "--llm", "openai:nosuch", *where])
    assert wrong.exit_code == 2 and "has no model 'nosuch'; it serves: live" in wrong.stderr
