"""The benchmark harness agrees with the runtime where it re-implements it (it may not import
fusembed, so that the fastembed environment can use it)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from fusembed._cpu import classify

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import harness

FLAGS = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "asimddp", "sse4_2")


def test_isa_class_is_the_runtimes_table() -> None:
    for arch in ("x86_64", "AMD64", "aarch64", "arm64", "riscv64"):
        for n in range(len(FLAGS) + 1):
            for flags in itertools.combinations(FLAGS, n):
                assert harness.isa_class(arch, flags) == classify(arch, flags), (arch, flags)


def test_the_harness_imports_nothing_outside_the_standard_library() -> None:
    imported = {line.split()[1].split(".")[0] for line in Path(harness.__file__).read_text().splitlines()
                if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_results_name_the_commit_from_git_or_from_a_payloads_commit_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the repository git says; in a copy without git (a GPU host's payload) the COMMIT file
    that offline_payload.sh writes does; with neither, "unknown"."""
    import importlib.util
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(harness.__file__).parent, check=True).stdout.strip()
    assert harness.fusembed_commit() == head
    copy = tmp_path / "harness.py"
    copy.write_text(Path(harness.__file__).read_text())
    spec = importlib.util.spec_from_file_location("harness_copy", copy)
    assert spec is not None and spec.loader is not None
    moved = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "harness_copy", moved)  # its dataclasses look themselves up
    spec.loader.exec_module(moved)
    assert moved.fusembed_commit() == "unknown"
    (tmp_path / "COMMIT").write_text("abc1234-dirty\n")
    assert moved.fusembed_commit() == "abc1234-dirty"
