"""benchmarks/cuda_options.py's shape-stall probe, run on the CPU provider (the plumbing; the
figures mean something only on CUDA), and its reading of onnxruntime's profile."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cuda_options
import pytest
from fusembed import Encoder


def test_the_profile_is_split_by_run_and_operator_type() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "ts": 1000, "dur": 5000},
        {"cat": "Node", "name": "a_kernel_time", "ts": 1100, "dur": 1000, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "b_kernel_time", "ts": 2200, "dur": 500, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "c_kernel_time", "ts": 2800, "dur": 2000, "args": {"op_name": "Attention"}},
        {"cat": "Node", "name": "c_fence_before", "ts": 2790, "dur": 7, "args": {"op_name": "Attention"}},
        {"cat": "Session", "name": "model_run", "ts": 9000, "dur": 1000},
        {"cat": "Node", "name": "a_kernel_time", "ts": 9100, "dur": 400, "args": {"op_name": "MatMul"}},
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 900},
    ]
    first, second = cuda_options.operator_times(events)
    assert first == {"ms": 5.0, "operators_ms": {"MatMul": 1.5, "Attention": 2.0}, "outside_ms": 1.5}
    assert second == {"ms": 1.0, "operators_ms": {"MatMul": 0.4}, "outside_ms": pytest.approx(0.6)}


def test_every_probe_runs_twice_and_the_largest_stall_is_profiled(tiny_bundle: Path) -> None:
    encoder = Encoder(tiny_bundle)
    probes = (((1, 8), "nothing: run before"), ((4, 8), "rows"), ((4, 16), "width"))
    result = cuda_options.shape_stalls(tiny_bundle / encoder.variant.file, "cpu", encoder, probes)
    assert [p["shape"] for p in result["probes"]] == [[1, 8], [4, 8], [4, 16]]
    assert all(p["first_ms"] > 0 and p["second_ms"] > 0 for p in result["probes"])
    slowest = result["slowest"]
    assert slowest["shape"] == max(result["probes"], key=lambda p: p["first_ms"] - p["second_ms"])["shape"]
    for run in (slowest["first"], slowest["second"]):
        assert "MatMul" in run["operators_ms"]
        assert run["outside_ms"] == pytest.approx(run["ms"] - sum(run["operators_ms"].values()))
    text = "\n".join(cuda_options.stall_markdown(result))
    assert "| 4 x 16 | width |" in text and "outside every operator" in text


def test_a_profile_that_does_not_match_the_runs_is_reported_not_misread() -> None:
    result = {"probes": [{"shape": [1, 8], "new": "rows", "first_ms": 1.0, "second_ms": 0.5}],
              "slowest": {"error": "the profile holds 2 runs, not 3"}}
    assert cuda_options.stall_markdown(result)[-1] == (
        "No profile of the largest stall: the profile holds 2 runs, not 3.")


def test_the_packed_graph_removes_padding_around_every_attention(tiny_bundle: Path, tmp_path: Path) -> None:
    """onnxruntime's converter on a fusembed graph: one RemovePadding after the embeddings, every
    Attention packed, one RestorePadding before the pooling. Its operators are CUDA-only, so the
    CPU provider refuses the graph (the dry run's row says so)."""
    import onnx
    import onnxruntime as ort

    encoder = Encoder(tiny_bundle)
    model = tiny_bundle / encoder.variant.file
    attentions = sum(n.op_type == "Attention" for n in onnx.load(str(model)).graph.node)
    packed = cuda_options.packed_model(model, tmp_path)
    assert isinstance(packed, Path)
    ops = [n.op_type for n in onnx.load(str(packed)).graph.node]
    assert attentions > 0 and ops.count("PackedAttention") == attentions and "Attention" not in ops
    assert ops.count("RemovePadding") == ops.count("RestorePadding") == 1
    with pytest.raises(Exception, match="RemovePadding"):
        ort.InferenceSession(str(packed), providers=["CPUExecutionProvider"])


def test_a_graph_without_fused_attention_is_not_packed(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert cuda_options.packed_model(path, tmp_path).startswith("not convertible")
