"""The embedder: precision detection and fallback, unit vectors, bf16/ONNX fidelity, stable settings."""
import numpy as np
import pytest

from bot import embed
from bot.embed import Embedder, resolve_precision, token_batches

TEXTS = [
    "When will Russia leave the International Space Station?",
    "Roscosmos said the country would withdraw from the station after 2024.",
    "os.path.join(path, *paths) joins one or more path segments intelligently.",
    "x",
    "A list is mutable; a tuple is not. " * 40,  # longer than the 256-token window
]


def with_flags(monkeypatch, flags):
    monkeypatch.setattr(embed, "cpu_flags", lambda: frozenset(flags))


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),
    ({"avx2", "avx512f"}, "fp32"),  # no native bf16: emulation would be slower than fp32
    (set(), "fp32"),  # no /proc/cpuinfo (macOS, containers without it)
])
def test_auto_precision_follows_cpu_flags(monkeypatch, flags, expected):
    with_flags(monkeypatch, flags)
    assert resolve_precision("auto") == expected
    assert Embedder().precision == expected
    assert Embedder(precision="fp32").precision == "fp32"  # explicit wins


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8")


def test_cpu_flags_read_from_proc(monkeypatch):
    embed.cpu_flags.cache_clear()
    try:
        flags = embed.cpu_flags()
        assert isinstance(flags, frozenset)
    finally:
        embed.cpu_flags.cache_clear()


def test_settings_are_stable():
    a, b = Embedder(precision="bf16"), Embedder(precision="bf16")
    assert a.settings == b.settings == {
        "model": "sentence-transformers/all-MiniLM-L6-v2", "precision": "bf16", "dim": 384, "normalized": True,
    }
    assert Embedder(precision="fp32").settings["precision"] == "fp32"


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


def test_tokenizer_truncates_like_the_model_and_does_not_pad():
    tokenizer = embed.load_tokenizer()
    assert len(tokenizer.encode("short text").ids) < 10
    assert len(tokenizer.encode(TEXTS[-1]).ids) == 256


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_vectors_are_unit_length_float32(precision):
    vectors = Embedder(precision=precision).embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert Embedder(precision=precision).embed([]).shape == (0, 384)


def test_bf16_matches_fp32_on_torch():
    tokenizer = embed.load_tokenizer()
    encodings = tokenizer.encode_batch(TEXTS)
    fp32 = embed._normalise(embed._torch_embed(encodings, "fp32"))
    bf16 = embed._normalise(embed._torch_embed(encodings, "bf16"))
    assert (fp32 * bf16).sum(axis=1).min() >= 0.999


def test_torch_engine_matches_stock_sentence_transformers():
    stock = embed.load_model().encode(TEXTS, normalize_embeddings=True)
    ours = embed._normalise(embed._torch_embed(embed.load_tokenizer().encode_batch(TEXTS), "fp32"))
    assert (stock * ours).sum(axis=1).min() >= 0.9999


def test_onnx_engine_matches_torch():
    if embed.export_onnx() is None:
        pytest.skip("onnx/onnxruntime not installed: everything runs on torch")
    session = embed._new_session(embed.onnx_model_file())
    encodings = embed.load_tokenizer().encode_batch(TEXTS)
    ours = embed._normalise(embed._onnx_run(session, encodings))
    torch_fp32 = embed._normalise(embed._torch_embed(encodings, "fp32"))
    assert (ours * torch_fp32).sum(axis=1).min() >= 0.9999


def test_query_and_documents_agree_whatever_the_engine(monkeypatch):
    emb = Embedder(precision="bf16")
    query = np.array(emb.embed_query(TEXTS[0]))  # small input: ONNX where available
    monkeypatch.setattr(embed, "SMALL_INPUT_TOKENS", 0)  # as large as an ingest group: torch
    docs = emb.embed(TEXTS)
    assert float(docs[0] @ query) >= 0.999
    assert np.allclose(emb.embed_documents(TEXTS[:2]), emb.embed(TEXTS[:2]), atol=1e-6)


def test_falls_back_to_torch_without_onnx(monkeypatch):
    monkeypatch.setattr(embed, "_session", None)
    monkeypatch.setattr(embed, "_session_tried", True)  # as if no export / onnxruntime missing
    emb = Embedder(precision="fp32")
    emb.warm_up()
    vectors = emb.embed(TEXTS[:2])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_onnx_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("QABOT_ONNX", "0")
    assert not embed.onnx_enabled()
    monkeypatch.setenv("QABOT_ONNX", "1")
    assert embed.onnx_enabled()


@pytest.mark.parametrize("precision, min_cos", [("bf16", 0.999), ("fp32", 0.9999)])
def test_openvino_engine_matches_torch_fp32(precision, min_cos):
    compiled = embed.openvino_model(precision)
    if compiled is None:
        pytest.skip("openvino not installed: ingest embeds on torch")
    encodings = embed.load_tokenizer().encode_batch(TEXTS)
    ours = embed._normalise(embed._openvino_run(compiled, encodings))
    torch_fp32 = embed._normalise(embed._torch_embed(encodings, "fp32"))
    assert (ours * torch_fp32).sum(axis=1).min() >= min_cos


def test_large_inputs_go_to_openvino(monkeypatch):
    if embed.openvino_model("bf16") is None:
        pytest.skip("openvino not installed: ingest embeds on torch")
    emb = Embedder(precision="bf16")
    assert emb.ingest_engine == "OpenVINO bf16"
    monkeypatch.setattr(embed, "SMALL_INPUT_TOKENS", 0)  # as large as an ingest group
    monkeypatch.setattr(embed, "_torch_embed", lambda *a, **k: pytest.fail("torch used for ingest"))
    expected = embed._normalise(embed._openvino_run(embed.openvino_model("bf16"),
                                                    embed.load_tokenizer().encode_batch(TEXTS)))
    assert np.allclose(emb.embed(TEXTS), expected, atol=1e-6)


def test_openvino_that_disagrees_is_not_used(monkeypatch):
    monkeypatch.setattr(embed, "_openvino", {})
    monkeypatch.setattr(embed, "OPENVINO_MIN_COSINE", 1.01)  # nothing can agree this well
    emb = Embedder(precision="bf16")
    assert emb.ingest_engine == "torch bf16"
    monkeypatch.setattr(embed, "SMALL_INPUT_TOKENS", 0)
    assert np.allclose(np.linalg.norm(emb.embed(TEXTS), axis=1), 1.0, atol=1e-5)


def test_openvino_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(embed, "_openvino", {})
    monkeypatch.setenv("QABOT_OPENVINO", "0")
    assert Embedder(precision="fp32").ingest_engine == "ONNX Runtime fp32"
    assert Embedder(precision="bf16").ingest_engine == "torch bf16"


def test_int8_ranking_vectors_stay_close_to_fp32_and_rank_alike():
    emb = Embedder()
    if embed.int8_session() is None:
        pytest.skip("onnxruntime quantization not available: sentences are ranked in fp32")
    fast, exact = emb.embed_for_ranking(TEXTS), emb.embed(TEXTS)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert (fast * exact).sum(axis=1).min() >= embed.INT8_MIN_COSINE
    question = exact[0]
    assert np.argsort(-(fast[1:] @ question))[0] == np.argsort(-(exact[1:] @ question))[0] == 0
    assert emb.embed_for_ranking([]).shape == (0, 384)


def test_int8_model_that_strays_is_not_used(monkeypatch, tmp_path):
    if embed.onnx_session() is None:
        pytest.skip("no ONNX export: sentences are ranked on torch")
    monkeypatch.setattr(embed, "int8_model_file", lambda: tmp_path / "model.int8.onnx")
    monkeypatch.setattr(embed, "_int8", [])
    monkeypatch.setattr(embed, "INT8_MIN_COSINE", 1.01)  # nothing quantized agrees this well
    emb = Embedder()
    assert np.allclose(emb.embed_for_ranking(TEXTS[:2]), emb.embed(TEXTS[:2]), atol=1e-6)
    assert not list(tmp_path.iterdir())  # neither the rejected model nor a temporary file is left


def test_int8_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(embed, "_int8", [])
    monkeypatch.setenv("QABOT_INT8", "0")
    emb = Embedder()
    assert embed.int8_session() is None
    assert np.allclose(emb.embed_for_ranking(TEXTS[:2]), emb.embed(TEXTS[:2]), atol=1e-6)
