import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "corpus" / "russia-iss-withdrawal.txt"


@pytest.fixture(autouse=True)
def _clean_qabot_env(monkeypatch):
    """Tests never pick up a developer's QABOT_* settings."""
    for name in list(os.environ):
        if name.startswith("QABOT_") or name in ("DISCORD_TOKEN", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def embedder():
    """One embedder for the session, on engines that ignore a developer's QABOT_* switches (the
    per-test clean-up above runs after a session fixture is made)."""
    from bot.config import cache_dir
    from bot.embed import Embedder, EngineRegistry, EngineSwitches

    emb = Embedder(registry=EngineRegistry(cache_dir=cache_dir({k: v for k, v in os.environ.items()
                                                                 if not k.startswith("QABOT_")}),
                                           switches=EngineSwitches()))
    emb.warm_up()
    return emb


@pytest.fixture(scope="module")
def openai_server():
    """The fake OpenAI-compatible server (tests/fake_openai.py) on loopback, one per test module."""
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def openai_env(openai_server, monkeypatch):
    """OPENAI_BASE_URL/OPENAI_API_KEY point the real langchain-openai client at the fake; its
    request log starts empty."""
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    openai_server.requests.clear()
    return openai_server


def write_pdf(path: Path, pages: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))


def copy_seed_corpus(root: Path) -> Path:
    """A corpus folder under `root` holding the shipped ISS article."""
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / SEED.name).write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
    return corpus


@pytest.fixture
def iss_corpus(tmp_path):
    return copy_seed_corpus(tmp_path)


@pytest.fixture(scope="module")
def iss_index(tmp_path_factory, embedder):
    """Settings of the ISS corpus ingested in-process, once per test module."""
    from bot.config import Settings
    from bot.ingest.pipeline import ingest

    root = tmp_path_factory.mktemp("iss")
    settings = Settings(corpus=copy_seed_corpus(root), index=root / "index")
    ingest(settings, embedder=embedder)
    return settings
