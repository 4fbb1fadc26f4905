"""The README's examples run, in order, as a newcomer would run them: `sh` blocks line by line in a
shell, `python` blocks as scripts with torch made unimportable. (`bash` blocks are set-up commands
such as `make` and `pip`, which the test suite itself is running under; `py` blocks need a Ray
cluster and cloud storage, and the calls they show are tested in tests/runtime/test_ray.py.)"""

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

import pytest

from tests.blocker import run_blocked

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def test_readme_has_runnable_examples() -> None:
    kinds = [kind for kind, _ in _blocks()]
    assert kinds.count("python") >= 2 and kinds.count("sh") >= 2


@pytest.mark.slow
def test_readme_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs: list[str] = []
    port = str(free_port())  # the README's 8080 may be taken on this machine
    background: list[subprocess.Popen[str]] = []
    try:
        for kind, code in _blocks():
            code = code.replace("8080", port)
            if kind == "sh":
                for line in code.splitlines():
                    if line.endswith(" &"):  # a server: started here, stopped when the test ends
                        with (tmp_path / f"background-{len(background)}.log").open("w") as log:
                            background.append(subprocess.Popen(
                                line[:-2], shell=True, env=env, text=True, stdout=log, stderr=log,
                                start_new_session=True))
                        wait_for_health(f"http://127.0.0.1:{port}/health", background[-1])
                        continue
                    result = subprocess.run(line, shell=True, capture_output=True, text=True, env=env,
                                            check=False, timeout=600)
                    assert result.returncode == 0, f"{line}\n{result.stderr}"
                    outputs.append(result.stdout)
            elif kind == "python":
                result = run_blocked(code)
                assert result.returncode == 0, f"{code}\n{result.stderr}"
                outputs.append(result.stdout)
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    text = "\n".join(outputs)
    # The seed example ranks the population sentence first, from Python and from the CLI.
    assert re.search(r"Query: How many people live in London\?\n0\.8\d+ Around 9 Million", text)
    # The CLI prints int8 scores: within 0.015 of sentence-transformers' fp32 0.8824 and 0.4583.
    found = re.search(r"\n(0\.\d+) Around 9 Million people live in London\n(0\.\d+) London is known", text)
    assert found, text
    assert abs(float(found[1]) - 0.8824) < 0.015 and abs(float(found[2]) - 0.4583) < 0.015
    assert re.search(r"\n0\.5\d{3} A man is riding a horse\.\n0\.\d{4} A cheetah chases prey\.\n", text)
    assert Path("london.npy").is_file()
    assert "batch 1: p50" in text and Path("bench/bench.json").is_file()
    # The server: curl gets an OpenAI list, the openai client two 384-float vectors.
    assert '{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [' in text
    assert re.search(r"2 vectors of 384 floats; \d+ tokens\ncosine 0\.8\d+", text), text
    # embed-corpus: one row per line of the London example, 384 float32 each.
    lines = len(Path("examples/london.txt").read_text().splitlines())
    assert f"{lines} rows fixed_size_list<element: float>[384]" in text, text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the README's server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 60 s")
