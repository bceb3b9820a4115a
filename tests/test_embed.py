"""The embedder: precision detection and fallback, unit vectors, bf16/ONNX fidelity, stable settings.

Engines are chosen through the seams `EngineRegistry` offers (its cache directory, switches, CPU
flags, fidelity floors, or a subclass); nothing here patches a module attribute."""
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from bot.embed import Embedder, EngineRegistry, EngineSwitches, FidelityFloors, cpu_flags, resolve_precision
from bot.embed.batching import SMALL_BATCH_TOKENS, SMALL_INPUT_TOKENS, token_batches, total_tokens
from bot.embed.engines import OnnxEngine, TorchEngine, new_session
from bot.embed.export import root_records_dropped
from bot.embed.model import read_cpu_flags
from bot.errors import SettingError

REPO = Path(__file__).resolve().parent.parent
TEXTS = [
    "When will Russia leave the International Space Station?",
    "Roscosmos said the country would withdraw from the station after 2024.",
    "os.path.join(path, *paths) joins one or more path segments intelligently.",
    "x",
    "A list is mutable; a tuple is not. " * 40,  # longer than the 256-token window
]
ALL_OFF = EngineSwitches(onnx=False, int8=False, openvino=False)


@pytest.fixture(scope="module")
def shared():
    """The process-wide registry every Embedder uses by default."""
    return EngineRegistry.default()


@pytest.fixture(scope="module")
def exported(shared):
    """The shared registry, with the ONNX export (and its int8 copy) in its cache."""
    if shared.onnx_export() is None:
        pytest.skip("onnx/onnxruntime not installed: everything runs on torch")
    shared.ensure_onnx_export()
    return shared


def large(texts: list[str]) -> list[str]:
    """`texts`, then numbered copies (distinct: a repeated text is embedded once) until they are
    more than a small input: as large as an ingest group."""
    tokens = total_tokens(EngineRegistry.default().tokenizer().encode_batch(texts))
    return texts + [f"{t} ({i})" for i in range(1, SMALL_INPUT_TOKENS // tokens + 2) for t in texts]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),
    ({"avx2", "avx512f"}, "fp32"),  # no native bf16: emulation would be slower than fp32
    (set(), "fp32"),  # no /proc/cpuinfo (macOS, containers without it)
])
def test_auto_precision_without_openvino_follows_cpu_flags(flags, expected):
    """Without OpenVINO there is nothing to measure (no int8): the guess from the flags."""
    registry = EngineRegistry(cpu_flags=flags, switches=EngineSwitches(openvino=False))
    assert resolve_precision("auto", frozenset(flags)) == expected
    assert registry.resolve_precision("auto") == expected
    assert Embedder(registry=registry).precision == expected
    assert Embedder(precision="fp32", registry=registry).precision == "fp32"  # explicit wins


def test_unknown_precision_is_refused():
    with pytest.raises(SettingError, match="unknown precision"):
        resolve_precision("int4")
    with pytest.raises(SettingError, match="unknown precision"):
        Embedder(precision="int4")


def test_cpu_flags_read_from_proc(tmp_path):
    assert isinstance(cpu_flags(), frozenset)
    assert EngineRegistry().cpu_flags == cpu_flags()  # a registry reads this machine's by default
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_bf16\n", encoding="utf-8")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_settings_are_stable():
    a, b = Embedder(precision="bf16"), Embedder(precision="bf16")
    assert a.settings == b.settings == {
        "model": "sentence-transformers/all-MiniLM-L6-v2", "precision": "bf16", "dim": 384, "normalized": True,
        "engine": a.registry.planned_ingest_engine("bf16"),
    }
    assert Embedder(precision="fp32").settings["precision"] == "fp32"
    off = EngineRegistry(switches=ALL_OFF)
    assert Embedder(precision="fp32", registry=off).settings["engine"] == "torch fp32"


def test_embedders_share_the_default_registry():
    a, b = Embedder(), Embedder(precision="fp32")
    assert a.registry is b.registry is EngineRegistry.default()
    own = EngineRegistry()
    assert Embedder(registry=own).registry is own is not EngineRegistry.default()


def test_token_batches_cover_every_text_once_within_budget():
    lengths = [5, 256, 30, 30, 200, 12, 256, 1, 80] * 20
    batches = token_batches(lengths, batch_tokens=1024, max_batch=16)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 16
        assert len(b) * max(lengths[i] for i in b) <= 1024 or len(b) == 1
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest, reverse=True)  # longest first: similar lengths together


def test_tokenizer_truncates_like_the_model_and_does_not_pad(shared):
    tokenizer = shared.tokenizer()
    assert len(tokenizer.encode("short text").ids) < 10
    assert len(tokenizer.encode(TEXTS[-1]).ids) == 256


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_vectors_are_unit_length_float32(precision):
    vectors = Embedder(precision=precision).embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert Embedder(precision=precision).embed([]).shape == (0, 384)


def test_bf16_matches_fp32_on_torch(shared):
    encodings = shared.tokenizer().encode_batch(TEXTS)
    fp32, bf16 = shared.torch("fp32").run(encodings), shared.torch("bf16").run(encodings)
    assert cosines(fp32, bf16).min() >= 0.999


def test_torch_engine_matches_stock_sentence_transformers(shared):
    stock = shared.sentence_transformer().encode(TEXTS, normalize_embeddings=True)
    ours = shared.torch("fp32").run(shared.tokenizer().encode_batch(TEXTS))
    assert cosines(stock, ours).min() >= 0.9999


def test_onnx_engine_matches_torch(exported):
    encodings = exported.tokenizer().encode_batch(TEXTS)
    ours = OnnxEngine(session=new_session(exported.onnx_model_file())).run(encodings)
    assert cosines(ours, exported.torch("fp32").run(encodings)).min() >= 0.9999


def test_query_and_documents_agree_whatever_the_engine():
    emb = Embedder(precision="bf16")
    query = np.array(emb.embed_query(TEXTS[0]))  # small input: ONNX where available
    documents = large(TEXTS)  # as large as an ingest group: the ingest engine
    assert emb.engine_for(emb.registry.tokenizer().encode_batch(documents)).name == emb.ingest_engine
    docs = emb.embed(documents)
    assert float(docs[0] @ query) >= 0.999
    assert np.allclose(emb.embed_documents(TEXTS[:2]), emb.embed(TEXTS[:2]), atol=1e-6)


def test_falls_back_to_torch_without_onnx(tmp_path):
    emb = Embedder(precision="fp32", registry=EngineRegistry(cache_dir=tmp_path, switches=ALL_OFF))
    emb.warm_up()
    assert emb.engine_for(emb.registry.tokenizer().encode_batch(TEXTS[:2])).name == "torch fp32"
    assert emb.ingest_engine == "torch fp32"
    vectors = emb.embed(TEXTS[:2])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb.embed_for_ranking(TEXTS[:2]), vectors, atol=1e-6)
    assert not list(tmp_path.iterdir())  # nothing exported with ONNX off


def test_onnx_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("QABOT_ONNX", "0")
    assert not EngineSwitches.from_env().onnx
    registry = EngineRegistry()  # switches read from the environment, once, now
    monkeypatch.setenv("QABOT_ONNX", "1")
    assert EngineSwitches.from_env().onnx
    assert not registry.switches.onnx
    assert registry.onnx_fp32() is None and registry.onnx_int8() is None and registry.openvino("fp32") is None
    assert Embedder(precision="fp32", registry=registry).ingest_engine == "torch fp32"
    monkeypatch.setenv("QABOT_ONNX", "maybe")
    with pytest.raises(SettingError, match="QABOT_ONNX"):
        EngineRegistry()


def test_an_export_made_in_process_is_picked_up(tmp_path):
    """A fresh cache: the first short input writes the export from the weights (no torch, no
    SentenceTransformer), checked, with its hash; the int8 copy only when sentences are first
    ranked; the vectors are the stock model's."""
    registry = EngineRegistry(cache_dir=tmp_path, switches=EngineSwitches(openvino=False))
    emb = Embedder(precision="fp32", registry=registry)
    assert not registry.onnx_model_file().exists()  # an empty cache has no export
    assert emb.engine_for(registry.tokenizer().encode_batch(TEXTS)).name == "ONNX Runtime fp32"
    assert registry.onnx_model_file().is_relative_to(tmp_path)
    assert not registry._sentence_transformer.made  # written from the safetensors file, not by torch
    assert sorted(p.name for p in registry.onnx_model_file().parent.iterdir()) == ["model.onnx", "model.onnx.sha256"]
    emb.embed_for_ranking(TEXTS[:2])  # the first sentences ranked: the int8 copy is made now
    assert sorted(p.name for p in registry.onnx_model_file().parent.iterdir()) == [
        "model.int8.onnx", "model.int8.onnx.sha256", "model.onnx", "model.onnx.sha256"]  # each with its hash
    stock = registry.sentence_transformer().encode(TEXTS, normalize_embeddings=True)
    assert cosines(emb.embed(TEXTS), stock).min() >= 0.9999


def test_a_model_the_writer_does_not_know_is_exported_by_torch(tmp_path):
    """The fallback: where bert_onnx does not know the model (here a copy whose config says it
    is another architecture), torch's exporter makes the graph, checked against torch."""
    import shutil

    from bot.embed import bert_onnx, export, model

    other = tmp_path / "model"
    shutil.copytree(model.model_path(), other)
    config = (other / "config.json").read_text(encoding="utf-8").replace('"BertModel"', '"OtherModel"')
    (other / "config.json").write_text(config, encoding="utf-8")
    assert "OtherModel" in bert_onnx.supported(other)
    registry = EngineRegistry(cache_dir=tmp_path / "cache", switches=EngineSwitches(openvino=False))
    target = registry.onnx_model_file()
    torch_fp32 = TorchEngine(module=registry.torch_module)  # the module alone: nothing exported on the side
    made = export.export_onnx(target, str(other), registry.torch_module, agrees_direct=lambda tmp: pytest.fail("not this"),
                              agrees_torch=lambda tmp: registry._agree(torch_fp32, OnnxEngine(session=new_session(tmp)),
                                                                       0.9999))
    assert made == target and export.verified(target)
    assert registry._sentence_transformer.made
    encodings = registry.tokenizer().encode_batch(TEXTS)
    assert cosines(OnnxEngine(session=new_session(target)).run(encodings), torch_fp32.run(encodings)).min() >= 0.9999

    # The written graph's int8 copy computes what the torch export's did: the answerer ranks
    # sentences with these vectors (quantize_dynamic quantizes per batch, so the graphs must match
    # op for op where it looks: with the token-type row as a constant, min cosine was 0.979).
    written = tmp_path / "written" / "model.onnx"
    written.parent.mkdir()
    bert_onnx.write_onnx(model.model_path(), written)
    int8 = {}
    for name, source in (("torch", target), ("written", written)):
        made = export.quantize_onnx(source, source.with_name("model.int8.onnx"), lambda tmp: True)
        int8[name] = OnnxEngine("int8", batch_tokens=SMALL_BATCH_TOKENS, session=new_session(made)).run(encodings)
    assert cosines(int8["torch"], int8["written"]).min() >= 0.9999


def test_the_written_graph_matches_its_numpy_reference_and_stock(shared):
    """bert_onnx: the graph (batched, padded) and the reference (one text at a time) agree with
    each other and with stock sentence-transformers, on texts from 1 to 256 tokens."""
    from bot.embed import bert_onnx, model

    bert = bert_onnx.Bert.load(model.model_path())
    path = shared.cache_dir / "written-for-test.onnx"
    try:
        bert_onnx.write_onnx(bert, path)
        encodings = shared.tokenizer().encode_batch(TEXTS)
        graph = OnnxEngine(session=new_session(path)).run(encodings)
    finally:
        path.unlink(missing_ok=True)
    reference = bert_onnx.NumpyEngine(bert=bert).run(encodings)
    stock = shared.sentence_transformer().encode(TEXTS, normalize_embeddings=True)
    assert cosines(graph, reference).min() >= 0.99999
    assert cosines(reference, stock).min() >= 0.99999
    assert cosines(graph, stock).min() >= 0.99999


@pytest.mark.parametrize("precision, min_cos", [("bf16", 0.999), ("fp32", 0.9999)])
def test_openvino_engine_matches_torch_fp32(shared, precision, min_cos):
    engine = shared.openvino(precision)
    if engine is None:
        pytest.skip("openvino not installed: ingest embeds on torch")
    encodings = shared.tokenizer().encode_batch(TEXTS)
    assert cosines(engine.run(encodings), shared.torch("fp32").run(encodings)).min() >= min_cos


class NoTorchRegistry(EngineRegistry):
    def torch(self, precision, batch_tokens=None):
        pytest.fail("torch used for ingest")


def test_large_inputs_go_to_openvino(shared):
    if shared.openvino("bf16") is None:
        pytest.skip("openvino not installed: ingest embeds on torch")
    registry = NoTorchRegistry()
    emb = Embedder(precision="bf16", registry=registry)
    assert emb.ingest_engine == "OpenVINO bf16"
    documents = large(TEXTS)
    expected = registry.openvino("bf16").run(registry.tokenizer().encode_batch(documents))
    assert np.allclose(emb.embed(documents), expected, atol=1e-6)


def test_openvino_that_disagrees_is_not_used(exported):
    emb = Embedder(precision="bf16", registry=EngineRegistry(floors=FidelityFloors(openvino=1.01)))  # nothing agrees this well
    assert emb.registry.openvino("bf16") is None
    assert emb.ingest_engine == "torch bf16"
    assert np.allclose(np.linalg.norm(emb.embed(large(TEXTS)), axis=1), 1.0, atol=1e-5)


def test_openvino_can_be_switched_off(monkeypatch, exported):
    monkeypatch.setenv("QABOT_OPENVINO", "0")
    registry = EngineRegistry()
    assert registry.switches == EngineSwitches(onnx=True, int8=True, openvino=False)
    assert Embedder(precision="fp32", registry=registry).ingest_engine == "ONNX Runtime fp32"
    assert Embedder(precision="bf16", registry=registry).ingest_engine == "torch bf16"


def test_int8_ranking_vectors_stay_close_to_fp32_and_rank_alike():
    emb = Embedder()
    if emb.registry.onnx_int8() is None:
        pytest.skip("onnxruntime quantization not available: sentences are ranked in fp32")
    fast, exact = emb.embed_for_ranking(TEXTS), emb.embed(TEXTS)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert cosines(fast, exact).min() >= FidelityFloors().int8
    question = exact[0]
    assert np.argsort(-(fast[1:] @ question))[0] == np.argsort(-(exact[1:] @ question))[0] == 0
    assert emb.embed_for_ranking([]).shape == (0, 384)


def test_int8_model_that_strays_is_not_used(exported, tmp_path):
    registry = EngineRegistry(cache_dir=tmp_path, floors=FidelityFloors(int8=1.01))  # nothing quantized agrees this well
    folder = registry.onnx_model_file().parent
    folder.mkdir(parents=True)
    registry.onnx_model_file().write_bytes(exported.onnx_model_file().read_bytes())  # the same export, no int8 copy
    root, root_filters = logging.getLogger(), list(logging.getLogger().filters)
    emb = Embedder(registry=registry)
    assert registry.onnx_int8() is None
    assert np.allclose(emb.embed_for_ranking(TEXTS[:2]), emb.embed(TEXTS[:2]), atol=1e-6)
    # neither the rejected model nor a temporary file (the export's hash is recorded when first checked)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.sha256"]
    assert root.filters == root_filters and logging.root.manager.disable == logging.NOTSET  # quieting undone


def test_quantizer_advice_is_dropped_and_nothing_else(caplog):
    """Only this thread's sub-ERROR records logged straight on the root logger (the quantizer's
    advice) are dropped while quantizing; nothing is disabled process-wide."""
    caplog.set_level(logging.INFO)
    with root_records_dropped():
        logging.warning("advice from the quantizer")
        logging.getLogger("bot.elsewhere").warning("a named logger's warning")
        other = threading.Thread(target=logging.warning, args=("another thread's warning",))
        other.start()
        other.join()
        logging.error("an error")
    logging.info("after")
    assert [r.getMessage() for r in caplog.records] == [
        "a named logger's warning", "another thread's warning", "an error", "after"]


def test_int8_can_be_switched_off(monkeypatch, exported):
    monkeypatch.setenv("QABOT_INT8", "0")
    registry = EngineRegistry()
    assert not registry.switches.int8
    emb = Embedder(registry=registry)
    assert registry.onnx_int8() is None
    assert np.allclose(emb.embed_for_ranking(TEXTS[:2]), emb.embed(TEXTS[:2]), atol=1e-6)


def test_questions_do_not_import_torch_once_exported(exported):
    """`qabot ask`'s embedding path, in a fresh process: ONNX Runtime only."""
    code = ("import sys; from bot.embed import Embedder; e = Embedder(); e.warm_up(); e.embed(['a question']);"
            "e.embed_for_ranking(['one sentence', 'another']);"
            "print(sorted(m for m in ('torch', 'openvino', 'sentence_transformers') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")} | {"QABOT_CACHE": str(exported.cache_dir)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
