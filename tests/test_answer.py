"""The answer path on the shipped ISS article: answers, citations, refusals, `ask` output."""
import json

import pytest
from click.testing import CliRunner

from bot.errors import QuestionError
from bot.qa.pipeline import QA
from bot.qa.question import clean_question, question_type, span_candidates
from bot.cli.main import cli
from bot.qa.condense import condense, is_follow_up
from bot.schema import REFUSAL_TEXT, Turn


@pytest.fixture(scope="module")
def qa(iss_index, embedder):
    return QA(iss_index, embedder=embedder)


def test_sample_question_answers_after_2024_citing_the_article(qa):
    answer = qa.answer("When will Russia leave the ISS?")
    assert not answer.refused
    assert answer.text.lower().startswith("after 2024")
    assert "[1]" in answer.text
    first = answer.citations[0]
    assert first.n == 1 and first.source == "russia-iss-withdrawal.txt"
    assert first.title.startswith("Russia to leave the International Space Station")
    # The marked span is the sentence that says it, inside the quoted passage.
    assert "after 2024" in first.quote[first.span_start:first.span_end]
    assert set(answer.timings_ms) >= {"embed", "dense", "bm25", "fusion", "answer", "total"}


@pytest.mark.parametrize("question,expected", [
    ("who is the new president of roscosmos?", "borisov"),
    ("how many countries take part in the ISS?", "16"),
    ("when was the international space station founded", "1998"),
    ("who did Borisov succeed?", "rogozin"),
    ("how far in advance will russia inform its partners", "one year"),
])
def test_factual_questions(qa, question, expected):
    answer = qa.answer(question)
    assert not answer.refused, question
    assert expected in answer.text.lower()
    for marker_n in {c.n for c in answer.citations}:
        assert f"[{marker_n}]" in answer.text


@pytest.mark.parametrize("question", [
    "What is the capital of France?",
    "when will nasa leave the iss",
    "how many astronauts are on the iss right now",
    "What's a good recipe for banana bread?",
])
def test_out_of_corpus_questions_are_refused_with_closest_passages(qa, question):
    answer = qa.answer(question)
    assert answer.refused, answer.text
    assert answer.text == REFUSAL_TEXT
    assert answer.citations and all(c.source == "russia-iss-withdrawal.txt" for c in answer.citations)


def test_citation_offsets_point_into_the_document(qa, iss_index):
    from bot.ingest.load import load_document

    doc = load_document(iss_index.corpus / "russia-iss-withdrawal.txt", "russia-iss-withdrawal.txt")
    for c in qa.answer("how much was invested in the space station?").citations:
        assert doc.text[c.start:c.end] == c.quote


def test_follow_up_uses_the_conversation(qa):
    history = [Turn("who is the new president of roscosmos?", qa.answer("who is the new president of roscosmos?").text)]
    answer = qa.answer("who did he replace?", history)
    assert answer.standalone_question and "roscosmos" in answer.standalone_question.lower()
    assert "rogozin" in answer.text.lower()


def test_condense_rule():
    history = [Turn("who is the new head of roscosmos?", "Borisov, the new president of Roscosmos [1].")]
    assert is_follow_up("who replaced him?") and is_follow_up("and then?")
    assert not is_follow_up("when was the international space station founded")
    standalone = condense("who replaced him?", history)
    assert standalone.startswith("who replaced him?")
    assert "new head of roscosmos" in standalone and "Borisov" in standalone
    assert condense("when was the ISS founded?", history) == "when was the ISS founded?"
    assert condense("who replaced him?", []) == "who replaced him?"


def test_question_types_and_spans():
    assert question_type("When will Russia leave?") == "when"
    assert question_type("how much did it cost") == "how_many"
    assert question_type("who signed it") == "who"
    assert question_type("what is it") is None
    sentence = "Russia will withdraw after 2024 and has 16 partners."
    assert [sentence[a:b] for a, b in span_candidates("when", sentence, "when")] == ["after 2024"]
    assert "16 partners" in [sentence[a:b] for a, b in span_candidates("how_many", sentence, "how many")]


@pytest.mark.parametrize("bad", ["", "   ", "\x00\x01", "x" * 5000])
def test_bad_questions_are_rejected_clearly(bad):
    with pytest.raises(QuestionError):
        clean_question(bad)


def test_control_characters_are_stripped():
    assert clean_question("when\x00 will\x1b russia leave?") == "when will russia leave?"


# --- the CLI ---------------------------------------------------------------------------------

CITATION_KEYS = {"n", "source", "title", "section", "page", "quote", "start", "end", "score"}


def _ask(iss_index, *args, input=None):
    return CliRunner().invoke(cli, ["ask", *args, "--corpus", str(iss_index.corpus), "--index", str(iss_index.index)],
                              input=input, catch_exceptions=False)


def test_ask_json_matches_the_schema(iss_index):
    result = _ask(iss_index, "when will Russia leave the ISS?", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # exactly one JSON object
    assert {"question", "answer", "refused", "citations", "timings_ms"} <= set(data)
    assert isinstance(data["refused"], bool) and data["refused"] is False
    assert "after 2024" in data["answer"].lower()
    for c in data["citations"]:
        assert CITATION_KEYS <= set(c)
        assert isinstance(c["n"], int) and isinstance(c["start"], int) and isinstance(c["score"], float)
    assert all(isinstance(v, (int, float)) for v in data["timings_ms"].values())


def test_ask_json_lines_from_stdin(iss_index):
    result = _ask(iss_index, "--json", "-", input="when will russia leave the iss?\n\nwhat is the capital of france?\n")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert not first["refused"] and second["refused"]


def test_ask_prints_answer_and_sources(iss_index):
    result = _ask(iss_index, "when will Russia leave the ISS?")
    assert result.exit_code == 0
    assert "After 2024" in result.stdout and "Sources" in result.stdout and "[1]" in result.stdout


@pytest.mark.parametrize("question", ["", "   ", "y" * 5000])
def test_ask_rejects_bad_questions_with_one_line(iss_index, question):
    result = _ask(iss_index, question)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_ask_ingests_when_the_index_is_missing(tmp_path, iss_corpus):
    result = CliRunner().invoke(cli, ["ask", "when will russia leave the iss?", "--corpus", str(iss_corpus),
                                      "--index", str(tmp_path / "fresh-index")])
    assert result.exit_code == 0, result.stderr
    assert "1 added" in result.stderr and "After 2024" in result.stdout
