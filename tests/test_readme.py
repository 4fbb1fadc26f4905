"""The examples in README.md and docs/*.md run, in order, as a newcomer would run them.

A fenced block's language says how it is run:

- `sh`: line by line in a shell, in a scratch directory holding a copy of examples/, with the
  venv's `python` and `fusembed` first on PATH. A line ending in ` &` starts a server, which the
  test waits for (its /health) and stops at the end. Ports 8080 and 8081 become free ports.
- `python`: as a script, with torch, transformers, sentence-transformers and optimum unimportable
  (tests/blocker.py) and warnings as errors.
- `bash`: shell that is not run here: set-up (make, pip, apt-get) that this suite itself runs
  under, benchmark runs of many minutes, and commands that need a GPU or a Ray cluster.
- `py`: Python that is not run here: it needs a GPU, a Ray cluster or cloud storage.

Every `bash` and `py` block must be in NOT_RUN, with the reason, and every NOT_RUN entry must
match a block, so that nothing escapes silently; any other language fails (tests/test_docs.py).

README.md runs first, and its `fusembed export` makes bundles/all-MiniLM-L6-v2; then docs/ in the
order of DOCS. Later blocks use what earlier ones made: the bundle, and its measurements recorded
by `fusembed doctor --record` in docs/cli.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.blocker import run_blocked

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("export.md", "python.md", "cli.md", "server.md", "corpus.md", "bundle.md", "performance.md",
        "gpu.md")
PAGES = ("README.md", *(f"docs/{name}" for name in DOCS))
RUN = ("sh", "python")
# (page, language, first line) -> why the block is not run here.
NOT_RUN: dict[tuple[str, str, str], str] = {
    ("README.md", "bash", "make demo   # set up .venv, export all-MiniLM-L6-v2 -> bundle -> semantic "
                          "search -> latency table (~3 min)"): "set-up: the suite runs under it",
    ("README.md", "bash", "pip install fusembed                      # runtime only: onnxruntime, "
                          "tokenizers, numpy, huggingface_hub"): "set-up: the suite runs under it",
    ("docs/export.md", "bash", "apt-get install qemu-user"):
        "set-up; the test it runs is part of the suite (CI sets FUSEMBED_REQUIRE_QEMU=1)",
    ("docs/corpus.md", "py", "import ray"):
        "needs a Ray cluster and cloud storage; the calls are tested in tests/runtime/test_ray.py",
    ("docs/corpus.md", "bash", "fusembed embed-corpus docs.jsonl out/ --bundle "
                               "/shared/bundles/all-MiniLM-L6-v2 --id-field id --ray --ray-address "
                               "ray://head:10001 --ray-workers 8 --ray-cpus-per-worker 4"):
        "needs a Ray cluster; --ray is tested in tests/runtime/test_ray.py",
    ("docs/performance.md", "bash", "bash benchmarks/fastembed_venv.sh          # once: fastembed "
                                    "needs its own venv (tokenizers>=0.23)"):
        "a benchmark run of about 30 minutes",
    ("docs/performance.md", "bash", ".venv/bin/python benchmarks/compare.py --models replica-distilbert,"
                                    "replica-mpnet,replica-roberta,replica-xlm-roberta,replica-modernbert,"
                                    "replica-qwen3 \\"):
        "a benchmark run of about 20 minutes, and all-mpnet-base-v2's weights",
    ("docs/python.md", "py", "from fusembed import Encoder, cos_sim"):
        "needs an e5-style bundle, exported from the hub; the calls are tested in "
        "tests/export/test_prompts.py on an XLM-RoBERTa replica with e5's prompts",
    ("docs/python.md", "py", "from fusembed import Encoder"):
        "needs a hub account; the calls are tested in tests/runtime/test_hub.py against a local hub",
    ("docs/cli.md", "bash", "fusembed push bundles/all-MiniLM-L6-v2 my-org/all-MiniLM-L6-v2-fusembed"):
        "needs a hub account; push, and BUNDLE as a hub id, are tested in tests/runtime/test_hub.py",
    ("docs/gpu.md", "bash", "pip install 'fusembed[gpu]'"): "set-up that replaces onnxruntime",
    ("docs/gpu.md", "py", "from fusembed import Encoder"): "needs a GPU",
    ("docs/gpu.md", "bash", "fusembed serve bundles/all-MiniLM-L6-v2 --device cuda --port 8080"):
        "needs a GPU",
    ("docs/gpu.md", "bash", ".venv/bin/python -m pytest tests/export/test_variants.py -k cuda"):
        "needs a GPU; the suite runs the test, which skips without one",
    ("docs/gpu.md", "bash", ".venv/bin/python benchmarks/serve_load.py bundles/all-MiniLM-L6-v2 "
                            "--device cuda"): "needs a GPU",
    ("docs/gpu.md", "bash", "python benchmarks/gpu.py bundles/all-MiniLM-L6-v2 --st-model "
                            "path/to/all-MiniLM-L6-v2 --server"): "needs a GPU and torch with CUDA",
    ("docs/gpu.md", "bash", "bash benchmarks/offline_payload.sh parts/ bundles/all-MiniLM-L6-v2     "
                            "# here; FP32=1 adds model.onnx"):
        "downloads about 260 MB of wheels from the package index; its run.sh is for a GPU host",
}
PORTS = ("8080", "8081")


class Block(NamedTuple):
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def key(self) -> tuple[str, str, str]:
        first = self.code.splitlines()[0] if self.code else ""
        return (self.page, self.language, first)


def blocks(page: str) -> list[Block]:
    """The fenced blocks of `page`, in order. Fences must start at column 0 and close."""
    found: list[Block] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate((ROOT / page).read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^\s+```", line):
            raise AssertionError(f"{page}:{number}: an indented fence; fences start at column 0")
        if not line.startswith("```"):
            if opened:
                body.append(line)
            continue
        if opened is None:
            opened, body = (number, line[3:].strip()), []
        elif line.strip() == "```":
            found.append(Block(page, opened[0], opened[1], "\n".join(body) + "\n"))
            opened = None
        else:
            raise AssertionError(f"{page}:{number}: a fence opens inside the block of line {opened[0]}")
    if opened:
        raise AssertionError(f"{page}:{opened[0]}: the block is never closed")
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def test_readme_has_runnable_examples() -> None:
    kinds = [b.language for b in blocks("README.md")]
    assert kinds.count("python") >= 1 and kinds.count("sh") >= 3


@pytest.mark.slow
def test_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ports = {p: str(free_port()) for p in PORTS}  # the docs' ports may be taken on this machine
    out: dict[str, str] = dict.fromkeys(PAGES, "")
    background: list[subprocess.Popen[str]] = []
    try:
        for block in all_blocks():
            if block.language not in RUN:
                assert block.key in NOT_RUN, f"{block.page}:{block.line}: a {block.language} block " \
                                             "that is not run must be listed in NOT_RUN"
                continue
            code = re.sub(rf"\b({'|'.join(PORTS)})\b", lambda m: ports[m[1]], block.code)
            where = f"{block.page}:{block.line}"
            if block.language == "python":
                result = run_blocked(code)
                assert result.returncode == 0, f"{where}\n{code}\n{result.stderr}"
                out[block.page] += result.stdout
                continue
            for line in code.splitlines():
                if line.endswith(" &"):  # a server: started here, stopped when the test ends
                    port = re.search(r"--port (\d+)", line)
                    assert port, f"{where}: a background command without --port: {line}"
                    with (tmp_path / f"background-{len(background)}.log").open("w") as log:
                        background.append(subprocess.Popen(
                            line[:-2], shell=True, env=env, text=True, stdout=log, stderr=log,
                            start_new_session=True))
                    wait_for_health(f"http://127.0.0.1:{port[1]}/health", background[-1])
                    continue
                result = subprocess.run(line, shell=True, capture_output=True, text=True, env=env,
                                        check=False, timeout=600)
                assert result.returncode == 0, f"{where}\n{line}\n{result.stderr}"
                out[block.page] += result.stdout
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    check_readme(out["README.md"])
    check_docs(out, tmp_path)


def check_readme(text: str) -> None:
    # The seed example ranks the population sentence first, from Python and from the CLI.
    assert re.search(r"Query: How many people live in London\?\n0\.8\d+ Around 9 Million", text), text
    # The CLI prints scores of `auto`'s variant: within 0.015 of sentence-transformers' fp32 0.8824
    # and 0.4583, whichever of int8 and fp32 it picked on this CPU.
    found = re.search(r"\n(0\.\d+) Around 9 Million people live in London\n(0\.\d+) London is known", text)
    assert found, text
    assert abs(float(found[1]) - 0.8824) < 0.015 and abs(float(found[2]) - 0.4583) < 0.015
    assert Path("london.npy").is_file()
    assert re.search(r"\nauto \(cpu\)  (int8|fp32): ", text), text  # fusembed info
    # The server: curl gets an OpenAI list.
    assert '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[' in text, text


def check_docs(out: dict[str, str], tmp_path: Path) -> None:
    text = out["docs/export.md"]
    assert "int8 scheme: w8a8-rowwise-pairsum\n" in text, text
    assert re.search(r"auto chose (int8|fp32) - ", text), text

    text = out["docs/python.md"]
    riding = r"^0\.5\d{3} A man is riding a horse\.\n0\.\d{4} A cheetah chases prey\.\n"
    assert re.search(riding, text, re.M), text
    assert "dim 384 | max_seq_length 256 | similarity cosine | normalized True" in text, text
    assert "fp32 asked for" in text and "encode_tokens equals encode: True" in text, text
    assert "InputError: texts[1] is int (42), expected str" in text, text
    assert "BundleError: bundle directory 'no-such-bundle'" in text, text
    assert re.search(r"int8 min cosine 0\.99\d+, \d+ sentences/s, batch-1 [\d.]+ ms\n", text), text
    assert re.search(r"\nok \| auto uses (int8|fp32)\n", text), text

    text = out["docs/cli.md"]
    assert text.startswith('{"index": 0, "embedding": [') and '\n{"index": 1, "embedding": [' in text
    assert '"document": "London is known for its financial district"' in text, text
    assert "batch 1: p50" in text and Path("bench/bench.json").is_file()
    assert "check.json ['fp16', 'fp32', 'int8']" in text, text
    assert "\nverdict    ok\n" in text and "\nrecorded   these measurements in" in text, text

    text = out["docs/server.md"]
    assert '"status": "ok"' in text and '"id": "all-MiniLM-L6-v2"' in text, text
    # curl's outputs run together (no newline): the embeddings call prints "384 floats".
    assert re.search(r"\}384 floats\n", text) and "fusembed_requests_total{" in text, text
    # The openai client: two 384-float vectors of two related sentences.
    assert re.search(r"2 vectors of 384 floats; \d+ tokens\ncosine 0\.8\d+", text), text
    assert "200 384 floats" in text, text

    text = out["docs/corpus.md"]
    lines = len((tmp_path / "examples/london.txt").read_text().splitlines())
    assert f"{lines} rows fixed_size_list<element: float>[384]" in text, text
    assert '"id": "b"' in text and f"{lines} rows written in {lines} shards; 0 bad rows" in text, text

    text = out["docs/bundle.md"]
    assert re.search(r"^\d+ check texts, reference: sentence-transformers ", text, re.M), text
    assert re.search(r"^fp32: min cosine 1\.00000 ", text, re.M), text
    assert re.search(r"^int8: min cosine 0\.99\d+ ", text, re.M), text
    assert re.search(r"^int8 measured on .* by doctor: ", text, re.M), text  # recorded in cli.md

    assert re.search(r"^this cpu    .*\nauto \(cpu\)  (int8|fp32): ", out["docs/performance.md"], re.M)
    assert re.search(r"^(no CUDA here: |running fp16 on cuda)", out["docs/gpu.md"], re.M), out["docs/gpu.md"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 60 s")
