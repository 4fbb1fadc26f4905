"""Run an ONNX graph on the CPU provider: `python run_onnx.py MODEL INPUTS.npz OUT.npz`.

Every array in INPUTS.npz named `<input>` or `<input>.<n>` feeds graph input `<input>` of run n;
the first output of each run is saved as `out.<n>`. Only numpy and onnxruntime are imported, so
this runs under `qemu-x86_64 -cpu Haswell` (an AVX2-only CPU) or an arm64 Python as it does here.
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort


def main(model: str, inputs: str, out: str) -> None:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    arrays = np.load(inputs)
    runs: dict[str, dict[str, np.ndarray]] = {}
    for key in arrays.files:
        name, _, n = key.partition(".")
        if name in names:
            runs.setdefault(n or "0", {})[name] = arrays[key]
    np.savez(out, **{f"out.{n}": session.run(None, feeds)[0] for n, feeds in sorted(runs.items())})


if __name__ == "__main__":
    main(*sys.argv[1:4])
