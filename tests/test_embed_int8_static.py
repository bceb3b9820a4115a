"""The static int8 ingest engine (int8-static, issue #18): int8 weights and activations whose ranges
are calibrated on fixed texts (bot/embed/static_int8.py). Its fidelity gate, its hash-checked file
in the shared cache, that only the probe's measurement chooses it (never the CPU flags), and an
int8-static index through the CLI."""
from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from bot.cli.main import cli
from bot.embed import Embedder, EngineRegistry, FidelityFloors, export, model, probe, static_int8
from bot.errors import QabotError
from bot.ingest.manifest import Manifest

TEXTS = [
    "When will Russia leave the International Space Station?",
    "os.path.join(path, *paths) joins one or more path segments intelligently.",
    "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
    "| Option | Default |\n|---|---|\n| --chunk-size | 1000 |\n| --k | 5 |",
    "A list is mutable; a tuple is not. " * 40,
]


@pytest.fixture(scope="module")
def shared():
    registry = EngineRegistry.default()
    if registry.openvino("int8-static") is None:
        pytest.skip("OpenVINO not installed (or int8-static refused on this CPU)")
    return registry


def fresh_cache(tmp_path, shared, **kwargs) -> EngineRegistry:
    """A registry on an empty cache directory holding only a copy of the fp32 export."""
    registry = EngineRegistry(cache_dir=tmp_path, **kwargs)
    registry.onnx_model_file().parent.mkdir(parents=True)
    shutil.copy(shared.onnx_model_file(), registry.onnx_model_file())
    return registry


def test_static_int8_stays_within_the_gate_of_fp32(shared):
    engine = shared.openvino("int8-static")
    assert engine.name == "OpenVINO int8-static"
    encodings = shared.tokenizer().encode_batch(TEXTS)
    cos = (engine.run(encodings) * shared.onnx_fp32().run(encodings)).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, cos
    mean, least = shared.gate_cosines["int8-static"]  # what its gate measured on probe.PASSAGES
    assert mean >= FidelityFloors().int8_ingest_mean and least >= FidelityFloors().int8_ingest_min
    # The ranges were measured on texts the gate does not check with.
    assert not set(static_int8.CALIBRATION_TEXTS) & set(probe.PASSAGES)


def test_static_int8_quantizes_activations_and_weights(shared):
    import openvino

    graph = openvino.Core().read_model(str(shared.static_int8_file()))
    types = [op.get_type_name() for op in graph.get_ordered_ops()]
    int8_weights = [op for op in graph.get_ordered_ops()
                    if op.get_type_name() == "Constant" and op.get_element_type() == openvino.Type.i8]
    # 6 layers: q, k, v, attention output and up-projection weights int8 (down-projections not);
    # activations before each, and both inputs of the attention scores.
    assert len(int8_weights) == 30 and types.count("FakeQuantize") == 42


def test_static_int8_that_strays_is_refused_in_one_line(tmp_path, shared):
    registry = fresh_cache(tmp_path, shared, floors=FidelityFloors(int8_ingest_mean=1.01))  # nothing is this close
    assert registry.openvino("int8-static") is None
    assert not registry.static_int8_file().exists()
    assert not list(registry.onnx_model_file().parent.glob("*.tmp*"))  # no temporary file left
    with pytest.raises(QabotError, match="embedded in int8-static") as refused:
        Embedder(precision="int8-static", registry=registry).embed([f"{t} ({i})" for i in range(40) for t in TEXTS])
    assert "\n" not in str(refused.value)


def test_static_int8_file_is_hash_checked_and_remade(tmp_path, shared, caplog):
    registry = fresh_cache(tmp_path, shared)
    with caplog.at_level("INFO", logger="bot.notice"):
        made = registry.static_int8()
    assert made is not None and export.verified(made)
    assert any("Preparing the embedding model" in r.getMessage() for r in caplog.records)  # said on stderr by the CLI
    assert made.name.startswith("model.int8s-") and static_int8.calibration_key() in made.name
    bin_file = made.with_suffix(".bin")
    data = bytearray(bin_file.read_bytes())
    data[len(data) // 3] ^= 0xFF
    bin_file.write_bytes(bytes(data))
    assert not export.verified(made)
    assert not made.exists() and not bin_file.exists()  # deleted, so that it is made again
    assert registry.static_int8() == made and export.verified(made)


def test_other_calibration_texts_make_another_file():
    assert static_int8.calibration_key() != static_int8.calibration_key(static_int8.CALIBRATION_TEXTS[:-1])


class FakeEngine:
    """An engine that takes `seconds` of a fake clock per run."""

    def __init__(self, name, seconds, clock):
        self.name, self.seconds, self.clock, self.runs = name, seconds, clock, 0

    def run(self, encodings, on_batch=None):
        self.runs += 1
        self.clock.now += self.seconds
        return np.zeros((len(encodings), model.DIM), dtype=np.float32)


class FakeClock:
    now = 0.0

    def __call__(self):
        return self.now


class Tokenizer:
    def encode_batch(self, texts):
        return list(texts)


def measured(seconds: dict[str, float]):
    clock = FakeClock()
    engines = {name: FakeEngine(name, s, clock) for name, s in seconds.items()}
    return probe.measure(Tokenizer(), engines, ["avx2"], None, clock=clock), engines


def test_static_int8_is_chosen_only_where_it_is_measured_fastest():
    # The probe's rule, should int8-static be offered to it again (the registry does not: below).
    # Measured clearly faster than the rest (more than the 15% margin): chosen.
    result, _ = measured({"int8": 0.30, "int8-static": 0.20, "bf16": 0.25, "fp32": 0.40})
    assert result.choice == "int8-static"
    # Faster, but within the margin of a more exact engine: the more exact one.
    result, _ = measured({"int8": 0.30, "int8-static": 0.23, "bf16": 0.25, "fp32": 0.40})
    assert result.choice == "bf16"
    result, _ = measured({"int8": 0.21, "int8-static": 0.20, "fp32": 0.40})
    assert result.choice == "int8"
    # Slower: never.
    result, engines = measured({"int8": 0.30, "int8-static": 0.35, "bf16": 0.25, "fp32": 0.40})
    assert result.choice == "bf16"
    assert engines["int8-static"].runs == 1 and engines["int8"].runs == 1  # slower than bf16: timed once
    assert engines["bf16"].runs == probe.ROUNDS
    # The guess from the CPU flags (no OpenVINO, no probe) never gives a quantized precision.
    for flags in itertools.chain.from_iterable(itertools.combinations(probe.KERNEL_FLAGS, n) for n in range(3)):
        assert model.resolve_precision("auto", frozenset(flags)) in ("bf16", "fp32")


def test_the_probe_does_not_offer_static_int8(tmp_path, shared):
    # "auto" never embeds in int8-static: an index in it lost a phantom-dev question from the top 5.
    registry = fresh_cache(tmp_path, shared)
    result = registry.probe()
    assert result is not None and "int8-static" not in result.chunks_per_s, result
    assert registry.resolve_precision("auto") != "int8-static"


def test_a_remembered_probe_gives_its_choice_without_measuring(tmp_path, shared):
    registry = fresh_cache(tmp_path, shared)
    for choice in ("bf16", "int8-static"):
        base = probe.ProbeResult(choice=choice, chunks_per_s={"int8-static": 60.0, "bf16": 55.0}, int8_cosine=None,
                                 flags=[], load=0.0, seconds=0.0, int8_static_cosine=(0.997, 0.99))
        probe.save(registry.probe_file(), base)
        again = EngineRegistry(cache_dir=tmp_path)
        assert again.resolve_precision("auto") == choice
        assert again.probe().int8_static_cosine == (0.997, 0.99)
        assert not again._openvino["int8-static"].made  # nothing compiled to answer that
    # A probe file of the version before (no int8-static field) still reads.
    raw = json.loads(registry.probe_file().read_text())
    del raw["int8_static_cosine"]
    registry.probe_file().write_text(json.dumps(raw))
    assert probe.load(registry.probe_file(), model.PRECISIONS).int8_static_cosine is None


def test_an_int8_static_index_records_its_engine_and_refuses_another_precision(tmp_path, shared, monkeypatch):
    # int8-static is used only when asked for: the probe ("auto") does not choose it (it cost a
    # phantom-dev question its place in the top 5).
    registry = fresh_cache(tmp_path / "cache", shared)
    monkeypatch.setattr(EngineRegistry, "_default", registry)
    monkeypatch.setenv("QABOT_PRECISION", "int8-static")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "iss.txt").write_text(
        "Russia will leave the International Space Station after 2024, Roscosmos said.\n\n"
        "The station needs the Russian segment to keep its altitude.\n", encoding="utf-8")
    where = ["--corpus", str(corpus), "--index", str(tmp_path / "index")]
    built = CliRunner().invoke(cli, ["ingest", *where])
    assert built.exit_code == 0, built.output
    manifest = Manifest(tmp_path / "index" / "manifest.sqlite3")
    try:
        embedding = manifest.get("embedding")
    finally:
        manifest.close()
    assert embedding["precision"] == "int8-static" and embedding["engine"] == "OpenVINO int8-static"

    answered = CliRunner().invoke(cli, ["ask", *where, "when will Russia leave the station?"])
    assert answered.exit_code == 0 and "2024" in answered.output, answered.output

    monkeypatch.setenv("QABOT_PRECISION", "bf16")
    (corpus / "more.txt").write_text("A new file, to be embedded.\n", encoding="utf-8")
    refused = CliRunner().invoke(cli, ["ingest", *where])
    assert refused.exit_code != 0
    message = [line for line in refused.output.splitlines() if line.strip()]
    assert len(message) == 1 and "embedded in int8-static, but bf16 was requested" in message[0], refused.output
