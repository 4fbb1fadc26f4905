"""benchmarks/payload_check.py: what the GPU payload's run.sh checks before gpu.py starts."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import payload_check

BENCHMARKS = Path(payload_check.__file__).parent

REQUIRES = [
    "onnxruntime>=1.20", "numpy>=1.24",
    'torch<3,>=2.4; extra == "export"', 'onnxruntime-gpu>=1.20; extra == "gpu"',
    'orjson>=3.9; extra == "serve"', 'uvloop>=0.19; sys_platform != "win32" and extra == "serve"',
    "pyzmq[draft]>=25 ; extra=='serve'", 'pyarrow>=15; extra == "corpus"',
]


def test_core_and_serve_requirements_count_and_other_extras_do_not() -> None:
    assert payload_check.missing(REQUIRES, lambda name: False) == [
        "onnxruntime", "numpy", "orjson", "uvloop", "pyzmq"]


def test_onnxruntime_gpu_stands_in_for_onnxruntime() -> None:
    have = {"onnxruntime-gpu", "numpy", "orjson", "uvloop", "pyzmq"}
    assert payload_check.missing(REQUIRES, have.__contains__) == []
    assert payload_check.missing(REQUIRES, (have - {"onnxruntime-gpu", "orjson"}).__contains__) == [
        "onnxruntime", "orjson"]


def test_a_requirement_it_cannot_read_is_an_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="cannot read the requirement"):
        payload_check.missing([">=1.0"], lambda name: True)


def test_fusembed_installed_here_passes_and_the_script_exits_0() -> None:
    """This environment has fusembed with its serve extra, as the payload's host must."""
    assert payload_check.missing(metadata.requires("fusembed") or []) == []
    done = subprocess.run([sys.executable, str(BENCHMARKS / "payload_check.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("onnxruntime ")


def test_the_script_names_what_is_missing_and_exits_1(tmp_path: Path) -> None:
    """With orjson hidden (a module that fails to import is not enough: the check reads the
    installed distributions), the script fails and names it."""
    hide = tmp_path / "sitecustomize.py"
    hide.write_text(
        "import importlib.metadata as m\n"
        "_version = m.version\n"
        "def version(name):\n"
        "    if name == 'orjson':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return _version(name)\n"
        "m.version = version\n"
    )
    done = subprocess.run([sys.executable, str(BENCHMARKS / "payload_check.py")], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "missing on this host and not in the payload: orjson" in done.stderr
