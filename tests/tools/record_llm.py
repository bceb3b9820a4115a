"""Record a real local model's replies to the answer prompts of the gold and dev questions, for
tests/test_llm_replay.py to replay through tests/fake_openai.py.

    python tests/tools/record_llm.py --gguf /work/models/qwen0.5b-q4km.gguf --name qwen2.5-coder-0.5b-q4km \\
        --server-python /path/to/venv-with-llama-cpp-python/bin/python \\
        --set iss_gold=/path/to/iss-index:corpus --set iss_dev=... [--set ...]

It starts llama-cpp-python's OpenAI-compatible server on 127.0.0.1 (the model named NAME), runs
`qabot eval` for each set through the real pipeline with `--llm openai:NAME`, writes every reply
with its key (the question and the passages the prompt held) to tests/llm_transcripts/NAME.jsonl,
prints each set's metrics, and stops the server. Already recorded prompts are skipped, so an
interrupted run resumes. Re-record whenever the answer prompt (bot/qa/llm/prompts.py) changes:
the replay test compares the prompt's fingerprint with the transcript's.

llama-cpp-python is a recording tool only, never a dependency of qabot: install it in its own
venv (see README "Optional: answers written by an LLM"). Sets are NAME=INDEX:CORPUS; NAME picks
the questions: iss_gold, pydocs_gold (tests/gold/*_qa.jsonl) or X_dev (tests/devsets/X_dev.jsonl).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fake_openai import transcript_key  # noqa: E402

from bot.ingest.discover import file_sha256  # noqa: E402

GOLD_FILES = {"iss_gold": REPO / "tests/gold/iss_qa.jsonl", "pydocs_gold": REPO / "tests/gold/pydocs_qa.jsonl"}


def questions_file(set_name: str) -> Path:
    return GOLD_FILES.get(set_name) or REPO / "tests/devsets" / f"{set_name}.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(python: str, gguf: Path, name: str, port: int, log: Path, chat_format: str | None) -> subprocess.Popen:
    command = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", name,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"]
    if chat_format:  # for a GGUF without a chat template (else llama-cpp-python falls back to llama-2's)
        command += ["--chat_format", chat_format]
    server = subprocess.Popen(command, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama server exited with {server.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
            return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"llama server did not start within 120 s; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--name", required=True, help="model name in the transcript and the server")
    parser.add_argument("--server-python", required=True, help="a python with llama-cpp-python[server]")
    parser.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=INDEX:CORPUS")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per reply")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--chat-format", default=None, help="llama-cpp-python chat format, e.g. gemma")
    args = parser.parse_args()

    from bot.config import Settings
    from bot.eval.gold import load_gold
    from bot.eval.scoring import evaluate
    from bot.qa.llm.prompts import prompt_fingerprint
    from bot.qa.pipeline import QA, make_llm_answerer

    out = args.out or REPO / "tests/llm_transcripts" / f"{args.name}.jsonl"
    header = {"model": args.name, "gguf": args.gguf.name, "gguf_sha256": file_sha256(args.gguf),
              "gguf_bytes": args.gguf.stat().st_size, "prompt": prompt_fingerprint(),
              "server": "llama-cpp-python[server] 0.3.36, n_ctx 4096, 2 threads, temperature 0"
                        + (f", chat format {args.chat_format}" if args.chat_format else ""),
              "recorded": time.strftime("%Y-%m-%d")}
    done: set[str] = set()
    asked: set[tuple[str, str]] = set()  # (set, id) already recorded: not asked again on resume
    if out.exists():
        lines = out.read_text(encoding="utf-8").splitlines()
        old = json.loads(lines[0])
        if old.get("prompt") != header["prompt"] or old.get("gguf_sha256") != header["gguf_sha256"]:
            raise SystemExit(f"{out} was recorded with another prompt or model: move it away to re-record")
        done = {json.loads(line)["key"] for line in lines[1:]}
        asked = {(json.loads(line)["set"], json.loads(line)["id"]) for line in lines[1:]}
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(header) + "\n", encoding="utf-8")

    port = free_port()
    server = start_server(args.server_python, args.gguf, args.name, port, out.with_suffix(".server.log"), args.chat_format)
    os.environ.update(OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY="unused")
    try:
        for spec in args.sets:
            set_name, _, where = spec.partition("=")
            index, _, corpus = where.partition(":")
            settings = Settings(corpus=Path(corpus), index=Path(index))
            qa = QA(settings)
            qa.llm_answerer = make_llm_answerer(f"openai:{args.name}", qa.embedder, args.timeout)
            current: dict = {}

            def record(question, passages, inputs, reply):
                key = transcript_key(inputs["question"], inputs["passages"])
                if key in done:
                    return
                done.add(key)
                entry = {"set": set_name, "id": current.get("id"), "question": question,
                         "passages": [p.id for p in passages], "key": key, "reply": reply}
                with open(out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")

            qa.llm_answerer.on_reply = record
            items = [i for i in load_gold(questions_file(set_name)) if (set_name, i["id"]) not in asked]

            def progress(result, _t=[time.monotonic()]):
                now = time.monotonic()
                print(f"{set_name} {result.id} {now - _t[0]:.1f}s ok={result.answer_correct} "
                      f"{' '.join(result.answer.split())[:100]}", flush=True)
                _t[0] = now

            class Tracking(list):  # tells `record` which gold item is being asked
                def __iter__(self):
                    for item in list.__iter__(self):
                        current["id"] = item["id"]
                        yield item

            report = evaluate(qa, Tracking(items), k=5, on_item=progress)
            print(set_name, json.dumps(report.metrics), flush=True)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
