"""The benchmark harness agrees with the runtime where it re-implements it (it may not import
fusembed, so that the fastembed environment can use it)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

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
