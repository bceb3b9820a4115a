"""The int8 ingest engine (issue #18): its fidelity gate, the per-CPU probe that chooses the ingest
precision, the hash-checked prepared files in the shared cache, and an int8 index through the CLI
(recorded in the manifest, never mixed with another precision)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.embed import Embedder, EngineRegistry, FidelityFloors
from bot.embed import export, probe
from bot.errors import QabotError
from bot.ingest.manifest import Manifest

TEXTS = [
    "When will Russia leave the International Space Station?",
    "os.path.join(path, *paths) joins one or more path segments intelligently.",
    "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
    "A list is mutable; a tuple is not. " * 40,
]


@pytest.fixture(scope="module")
def shared():
    registry = EngineRegistry.default()
    if registry.openvino("int8") is None:
        pytest.skip("OpenVINO not installed (or int8 refused on this CPU): ingest runs bf16/fp32")
    return registry


def fresh_cache(tmp_path, shared, **kwargs) -> EngineRegistry:
    """A registry on an empty cache directory holding only a copy of the fp32 export (no torch)."""
    registry = EngineRegistry(cache_dir=tmp_path, **kwargs)
    registry.onnx_model_file().parent.mkdir(parents=True)
    shutil.copy(shared.onnx_model_file(), registry.onnx_model_file())
    return registry


def test_int8_engine_stays_within_the_gate_of_fp32(shared):
    engine = shared.openvino("int8")
    assert engine.name == "OpenVINO int8"
    encodings = shared.tokenizer().encode_batch(TEXTS)
    cos = (engine.run(encodings) * shared.onnx_fp32().run(encodings)).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, cos
    mean, least = shared.int8_cosine
    assert mean >= FidelityFloors().int8_ingest_mean and least >= FidelityFloors().int8_ingest_min


@pytest.mark.parametrize("precision, prepared_file", [("int8", "int8_weights_file"),
                                                      ("int8-static", "static_int8_file")])
def test_a_quantized_engine_that_strays_is_refused_in_one_line(tmp_path, shared, precision, prepared_file):
    registry = fresh_cache(tmp_path, shared, floors=FidelityFloors(int8_ingest_mean=1.01))  # nothing is this close
    assert registry.openvino(precision) is None
    assert not getattr(registry, prepared_file)().exists()
    assert not list(registry.onnx_model_file().parent.glob("*.tmp*"))  # no temporary file left
    with pytest.raises(QabotError, match=f"embedded in {precision}") as refused:
        Embedder(precision=precision, registry=registry).embed([f"{t} ({i})" for i in range(40) for t in TEXTS])
    assert "\n" not in str(refused.value)


def test_prepared_files_are_hash_checked_and_remade(tmp_path, shared):
    registry = fresh_cache(tmp_path, shared)
    weights = registry.int8_weights()
    assert weights is not None and export.verified(weights)
    bin_file = weights.with_suffix(".bin")
    data = bytearray(bin_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    bin_file.write_bytes(bytes(data))
    assert not export.verified(weights)
    assert not weights.exists() and not bin_file.exists()  # deleted, so that it is made again
    assert registry.int8_weights() == weights and export.verified(weights)


def test_probe_chooses_the_fastest_and_is_remembered_per_cpu(tmp_path, shared):
    registry = fresh_cache(tmp_path, shared)
    result = registry.probe()
    assert set(result.chunks_per_s) >= {"int8", "fp32"}
    assert result.choice == probe.choose(result.chunks_per_s)
    # the most exact engine within 15% of the fastest: noise under load does not trade fidelity away
    assert probe.choose({"int8": 12.4, "bf16": 12.0, "fp32": 6.5}) == "bf16"
    assert probe.choose({"int8": 17.1, "bf16": 26.5, "fp32": 11.3}) == "bf16"
    assert probe.choose({"int8": 9.7, "fp32": 6.2}) == "int8"
    assert probe.choose({"int8": 7.0, "fp32": 6.5}) == "fp32"
    assert registry.resolve_precision("auto") == result.choice
    assert json.loads(registry.probe_file().read_text())["choice"] == result.choice

    # A remembered probe is used as it is (here one that chose int8), without measuring again.
    forced = probe.ProbeResult(**{**result.__dict__, "choice": "int8"})
    probe.save(registry.probe_file(), forced)
    again = EngineRegistry(cache_dir=tmp_path)
    assert again.resolve_precision("auto") == "int8"
    assert not again._openvino["int8"].made  # nothing compiled to answer that
    assert again.resolve_precision("fp32") == "fp32"  # an explicit precision wins
    other_cpu = EngineRegistry(cache_dir=tmp_path, cpu_flags={"avx2"})
    assert other_cpu.probe_file() != registry.probe_file()  # another CPU is probed on its own


@pytest.mark.parametrize("precision", ["int8", "int8-static"])
def test_a_quantized_index_records_its_engine_and_refuses_another_precision(tmp_path, shared, monkeypatch, precision):
    # Each is used only when asked for here (int8-static never by "auto": it cost a phantom-dev
    # question its place in the top 5); its prepared file is made in a cache of its own.
    if shared.openvino(precision) is None:
        pytest.skip(f"{precision} refused on this CPU")
    monkeypatch.setattr(EngineRegistry, "_default", fresh_cache(tmp_path / "cache", shared))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "iss.txt").write_text(
        "Russia will leave the International Space Station after 2024, Roscosmos said.\n\n"
        "The station needs the Russian segment to keep its altitude.\n", encoding="utf-8")
    where = ["--corpus", str(corpus), "--index", str(tmp_path / "index")]
    monkeypatch.setenv("QABOT_PRECISION", precision)
    built = CliRunner().invoke(cli, ["ingest", *where])
    assert built.exit_code == 0, built.output
    manifest = Manifest(tmp_path / "index" / "manifest.sqlite3")
    try:
        embedding = manifest.get("embedding")
    finally:
        manifest.close()
    assert embedding["precision"] == precision and embedding["engine"] == f"OpenVINO {precision}"

    answered = CliRunner().invoke(cli, ["ask", *where, "when will Russia leave the station?"])
    assert answered.exit_code == 0 and "2024" in answered.output, answered.output

    monkeypatch.setenv("QABOT_PRECISION", "bf16")
    (corpus / "more.txt").write_text("A new file, to be embedded.\n", encoding="utf-8")
    refused = CliRunner().invoke(cli, ["ingest", *where])
    assert refused.exit_code != 0
    message = [line for line in refused.output.splitlines() if line.strip()]
    assert len(message) == 1 and f"embedded in {precision}, but bf16 was requested" in message[0], refused.output


def test_ranking_on_int8_vectors_matches_fp32_on_the_probe_passages(shared):
    """Questions are embedded in fp32 (ONNX Runtime) whatever the index's precision: against int8
    passage vectors they find the same best passage as against fp32 ones."""
    encodings = shared.tokenizer().encode_batch(probe.PASSAGES)
    int8, fp32 = shared.openvino("int8").run(encodings), shared.onnx_fp32().run(encodings)
    questions = shared.onnx_fp32().run(shared.tokenizer().encode_batch(
        ["when does Russia leave the space station?", "how do I run a command and wait for it?",
         "which restrictions does postfix apply to recipients?", "what does lru_cache do?"]))
    assert np.array_equal((questions @ int8.T).argmax(axis=1), (questions @ fp32.T).argmax(axis=1))


def test_repeated_texts_are_embedded_once_and_counted(shared):
    class Counting(EngineRegistry):
        def tokenizer(self):
            tokenizer = super().tokenizer()
            outer = self

            class Counted:
                def encode_batch(self, texts):
                    outer.encoded.extend(texts)
                    return tokenizer.encode_batch(texts)
            return Counted()

    registry = Counting()
    registry.encoded = []
    done = []
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[1]]
    vectors = Embedder(precision="fp32", registry=registry).embed(texts, on_batch=done.append)
    assert registry.encoded == [TEXTS[0], TEXTS[1], TEXTS[2]]
    assert sum(done) == len(texts)
    assert np.allclose(vectors[2], vectors[0]) and np.allclose(vectors[4], vectors[1])
    assert np.allclose(vectors, Embedder(precision="fp32").embed(texts), atol=1e-6)
