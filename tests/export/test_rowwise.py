"""The w8a8-rowwise-pairsum rewrite on a toy graph: close to the float GEMM, one scale per token (a row's
result never depends on the other rows), and an all-zero row stays exactly zero."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fusembed import ExportError
from fusembed.export.graph import IR_VERSION
from fusembed.export.rowwise import quantize_rowwise
from onnx import TensorProto, helper, numpy_helper

K, N = 64, 48


def toy(with_ids: bool = True) -> onnx.ModelProto:
    """x [batch, tokens, K] -> x @ W1 and x @ W2 (one group: two MatMuls reading the same x)."""
    rng = np.random.default_rng(0)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", K])]
    if with_ids:
        inputs.insert(0, helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "S"]))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["y1"]), helper.make_node("MatMul", ["x", "w2"], ["y2"])],
        "toy", inputs,
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((K, N)).astype(np.float32), "w1"),
         numpy_helper.from_array(rng.standard_normal((K, 2 * N)).astype(np.float32), "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.zeros(x.shape[:2], np.int64)
    return session.run(None, {"input_ids": ids, "x": x})  # type: ignore[no-any-return]


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_rowwise_is_close_per_token_and_keeps_zero_rows(alpha: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, K)).astype(np.float32)
    x[:, :, 7] *= 30  # an outlier channel, as BERT's layer-norm outputs have
    x[1, 2] = 0.0
    reference = run(toy(), x)
    model = toy()
    peaks = {"x": np.abs(x.reshape(-1, K)).max(axis=0)}
    result = quantize_rowwise(model, lambda names: {n: peaks[n] for n in names}, alpha=alpha)
    assert (result.groups, result.gemms) == (1, 2)
    ops = [n.op_type for n in model.graph.node]
    assert "MatMul" not in ops and ops.count("MatMulIntegerToFloat") == 1  # Q/K/V-style concat
    got = run(model, x)
    for ref, out in zip(reference, got, strict=True):
        assert out.shape == ref.shape
        rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        assert rel < 0.02
    assert np.all(got[0][1, 2] == 0.0) and np.all(got[1][1, 2] == 0.0)
    # Change every other row: row (0, 0) must come out bit for bit the same.
    other = x.copy()
    other[1:] *= 5
    other[0, 1:] = rng.standard_normal((4, K))
    again = run(model, other)
    np.testing.assert_array_equal(again[0][0, 0], got[0][0, 0])


def test_rowwise_needs_input_ids() -> None:
    model = toy(with_ids=False)
    before = model.SerializeToString()
    with pytest.raises(ExportError, match="input_ids"):
        quantize_rowwise(model, lambda names: {}, alpha=0.0)
    assert model.SerializeToString() == before  # refused before touching the graph


def test_unknown_weight_range_is_refused() -> None:
    model = toy()
    before = model.SerializeToString()
    with pytest.raises(ExportError, match="weight_range must be one of"):
        quantize_rowwise(model, lambda names: {}, alpha=0.0, weight_range="9bit")  # type: ignore[arg-type]
    assert model.SerializeToString() == before
