"""The static int8 ingest engine (int8-static, issue #18): int8 weights and activations whose ranges
are calibrated on fixed texts (bot/embed/static_int8.py). Its fidelity gate, its hash-checked file
in the shared cache, and that "auto" never chooses it. Its refusal when it strays and an
int8-static index through the CLI are tested with int8's, in test_embed_int8.py."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from bot.embed import EngineRegistry, FidelityFloors, export, model, probe, static_int8
from test_embed_int8 import fresh_cache

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
