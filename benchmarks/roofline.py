"""How close an engine runs to this machine's GEMM limit.

A BERT encoder spends almost all its arithmetic in six weight GEMMs per layer. This measures, through
onnxruntime on this machine, what those GEMMs reach at the model's own shapes ([tokens, hidden] x
[hidden, 3*hidden] for Q/K/V, [hidden, hidden], [hidden, 4*hidden], [4*hidden, hidden]) in fp32
(MatMul) and int8 (MatMulInteger, u8 activations x s8 weights, the kernels the int8 variants use),
and turns an achieved tokens/s into a fraction of that limit:

    achieved = real tokens/s x FLOPs per token,  FLOPs per token = layers x (24 h^2 + 4 S h)

(24 h^2: the six weight GEMMs, 2 FLOPs per multiply-add; 4 S h: attention scores and context over
S tokens). Padding is not counted: work spent on padding is work the engine wasted.

    python benchmarks/roofline.py --hidden 384 --tokens 672
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # onnxruntime refuses the IR version onnx >= 1.23 writes by default


def layer_shapes(hidden: int) -> list[tuple[int, int]]:
    """(K, N) of one layer's weight GEMMs: Q/K/V as one, attention output, FFN in, FFN out."""
    return [(hidden, 3 * hidden), (hidden, hidden), (hidden, 4 * hidden), (4 * hidden, hidden)]


def flops_per_token(layers: int, hidden: int, seq_len: float) -> float:
    return layers * (24 * hidden * hidden + 4 * seq_len * hidden)


def _gemm_session(kind: str, k: int, n: int, threads: int) -> ort.InferenceSession:
    rng = np.random.default_rng(0)
    if kind == "fp32":
        weight = rng.standard_normal((k, n)).astype(np.float32)
        node = helper.make_node("MatMul", ["X", "W"], ["Y"])
        x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    else:
        weight = rng.integers(-127, 128, (k, n)).astype(np.int8)
        node = helper.make_node("MatMulInteger", ["X", "W"], ["Y"])
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
    graph = helper.make_graph(
        [node], "gemm", [helper.make_tensor_value_info("X", x_type, ["M", k])],
        [helper.make_tensor_value_info("Y", y_type, ["M", n])], [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def layer_gemm_seconds(hidden: int, tokens: int, threads: int, kind: str, seconds: float = 0.5) -> float:
    """Mean time of one layer's weight GEMMs at `tokens` rows, run one after the other."""
    rng = np.random.default_rng(1)
    total = 0.0
    for k, n in layer_shapes(hidden):
        session = _gemm_session(kind, k, n, threads)
        x = (rng.standard_normal((tokens, k)).astype(np.float32) if kind == "fp32"
             else rng.integers(0, 256, (tokens, k)).astype(np.uint8))
        for _ in range(5):
            session.run(None, {"X": x})
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run(None, {"X": x})
            runs += 1
        total += (time.perf_counter() - start) / runs
    return total


def gemm_peak(hidden: int, tokens: int, threads: int, seconds: float = 0.5) -> dict[str, float]:
    """FLOP-weighted GEMM throughput (FLOP/s; int8: integer op/s) at one layer's shapes."""
    flops = sum(2 * tokens * k * n for k, n in layer_shapes(hidden))
    return {kind: flops / layer_gemm_seconds(hidden, tokens, threads, kind, seconds)
            for kind in ("fp32", "int8")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--tokens", type=int, default=672, help="rows per GEMM (batch x tokens)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    peak = gemm_peak(args.hidden, args.tokens, args.threads)
    print(f"fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, int8 {peak['int8'] / 1e9:.0f} GOP/s "
          f"(hidden {args.hidden}, {args.tokens} rows, {args.threads} threads)")


if __name__ == "__main__":
    main()
