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
    from bot.embed import Embedder

    emb = Embedder()
    emb.warm_up()
    return emb


def write_pdf(path: Path, pages: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))


@pytest.fixture
def iss_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / SEED.name).write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
    return corpus
