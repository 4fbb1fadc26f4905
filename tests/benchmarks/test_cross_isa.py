"""benchmarks/cross_isa.py's AMX-off run: its check passes only on a trace where onnxruntime asked
for AMX and every ask was refused, and on a CPU with AMX the injection does refuse it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fusembed import cpu_info
from fusembed.export.graph import IR_VERSION

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cross_isa

SET_FS = "2905  arch_prctl(ARCH_SET_FS, 0x7fb119f3cb80) = 0"
ASKED = "2905  arch_prctl(ARCH_REQ_XCOMP_PERM, 0x12 /* XFEATURE_XTILE_DATA */)"
REFUSED = f"{ASKED} = -1 EPERM (Operation not permitted) (INJECTED)"
GRANTED = f"{ASKED} = 0"


@pytest.mark.parametrize("lines", [[SET_FS, REFUSED], [SET_FS, REFUSED, "2905  +++ exited with 0 +++"]])
def test_amx_check_accepts_a_refused_request(tmp_path: Path, lines: list[str]) -> None:
    log = tmp_path / "trace"
    log.write_text("\n".join(lines) + "\n")
    cross_isa.amx_refused(log)()


@pytest.mark.parametrize("lines", [[SET_FS], [SET_FS, GRANTED], [SET_FS, REFUSED, GRANTED]])
def test_amx_check_rejects_a_run_that_may_have_used_amx(tmp_path: Path, lines: list[str]) -> None:
    log = tmp_path / "trace"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match="expected onnxruntime's request for AMX to be refused"):
        cross_isa.amx_refused(log)()


@pytest.mark.skipif(cpu_info().isa != "amx" or shutil.which("strace") is None,
                    reason="needs a CPU with AMX and strace")
def test_injection_refuses_amx_to_onnxruntime(tmp_path: Path) -> None:
    """On AMX the target's own command line leads an int8 GEMM to ask for AMX and be refused."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [64, 256])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [64, 256])],
        [helper.make_tensor("b", TensorProto.INT8, [256, 256], np.ones(256 * 256, np.int8).tobytes(),
                            raw=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    onnx.save(model, tmp_path / "mm.onnx")
    script = tmp_path / "run.py"
    script.write_text("import sys, numpy as np, onnxruntime as ort\n"
                      "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
                      "y = s.run(None, {'a': np.full((64, 256), 3, np.uint8)})[0]\n"
                      "assert (y == 3 * 256).all()\n")
    args = argparse.Namespace(amx_off=True, avx2=False, arm64_python=None)
    (target,) = [t for t in cross_isa.targets(args, tmp_path) if t.name != "native"]
    subprocess.run([*target.prefix, str(script), str(tmp_path / "mm.onnx")], check=True)
    assert target.check is not None
    target.check()


def test_amx_off_without_strace_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Amx:
        isa = "amx"

    monkeypatch.setattr(cross_isa, "cpu_info", Amx)
    monkeypatch.setattr(cross_isa.shutil, "which", lambda name: None)
    args = argparse.Namespace(amx_off=True, avx2=False, arm64_python=None)
    with pytest.raises(SystemExit, match=r"--amx-off needs strace \(apt-get install strace\); "
                                         r"or pass --no-amx-off"):
        cross_isa.targets(args, tmp_path)
    args.amx_off = False  # the way out it names
    assert [t.name for t in cross_isa.targets(args, tmp_path)] == ["native"]
