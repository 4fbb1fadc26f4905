"""The `w8a8-rowwise-pairsum` int8 scheme: int8 weights per output column, int8 activations per token.

Each token's activation row gets its own scale, computed in the graph from that row alone, so a
text's embedding never depends on the rest of its batch, and a token with large activations does
not crush the precision of the others (a calibrated per-tensor scale, as in `w7a8-static`, has to
cover every token's range at once; on all-MiniLM-L6-v2 that costs mean cosine 0.9916).

Per group of MatMuls that read the same activation (Q, K and V are one group, concatenated into
one wider GEMM), the graph computes, with `x` flattened to `[tokens, K]`:

    x  = x * (1 / smooth)                      only where smoothing is on (see below)
    r  = max(|x|, axis=1) / 127                one scale per token
    q  = QuantizeLinear(x, r, 128, axis=0)     uint8, zero point 128: onnxruntime's u8s8 kernels
    y  = MatMulIntegerToFloat(q, W8, 1, w_scale, 128) * r[:, None]

Ten to twelve nodes per group; the concat of Q, K and V, one zero-point vector and one output
shape for all groups keep that count down, which is what batch-1 latency pays for.

**Weights that cannot saturate.** onnxruntime's AVX2 kernels multiply u8 activations by s8
weights with vpmaddubsw, which adds each pair of neighbouring products along K in 16 bits with
saturation; VNNI, AMX and ARM accumulate in 32 bits. q reaches 255, so a pair is safe when
|w[2j]| + |w[2j+1]| <= 128. `weight_range`:

- "pairsum" (the default): each column's scale maps its largest pair sum to 127, so after
  rounding every pair sums to at most 128. Most columns keep nearly 8 bits: a pair of two
  near-peak weights is rare.
- "7bit": |w| <= 63 (onnxruntime's `reduce_range`): always safe, one bit less precise.
- "8bit": |w| <= 127, exact only on CPUs with VNNI-class dot products; for comparison only.

`smooth` is SmoothQuant's per-channel migration (Xiao et al., 2023): channels that carry
outliers in every token are divided down before quantisation and their weight rows multiplied up
by the same factor, so neither side needs a wide range. `alpha` sets the balance; 0 turns it off.

Biases stay where the fusions put them: MultiHeadAttention's bias input, the Add before each
residual, BiasGelu.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import onnx
from fusembed._errors import ExportError
from onnx import TensorProto, helper, numpy_helper

_MS = "com.microsoft"
WeightRange = Literal["pairsum", "7bit", "8bit"]
# u8 activations reach 255, so 255 * (|w1| + |w2|) <= 32767 (int16) needs |w1| + |w2| <= 128.
_PAIR_LIMIT = 128
# Activation names -> each one's per-channel max |value| over real tokens of calibration texts.
ChannelMax = Callable[[list[str]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class RowwiseResult:
    groups: int
    gemms: int


def quantize_rowwise(model: onnx.ModelProto, channel_abs_max: ChannelMax, *, alpha: float,
                     weight_range: WeightRange = "pairsum") -> RowwiseResult:
    """Rewrite every MatMul with a float weight initializer in `model` (in place).

    `weight_range` is how each weight column is scaled to int8 (see the module docstring): "pairsum"
    and "7bit" are exact on every CPU; "8bit" only where the int8 GEMM has a dot product."""
    if weight_range not in get_args(WeightRange):
        raise ExportError(f"weight_range must be one of {get_args(WeightRange)}, got {weight_range!r}")
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    groups: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            weight = inits[node.input[1]]
            if len(weight.dims) == 2 and weight.data_type == TensorProto.FLOAT:
                groups[node.input[0]].append(node)
    if not groups:
        return RowwiseResult(0, 0)
    if "input_ids" not in {i.name for i in graph.input}:
        raise ExportError("w8a8-rowwise-pairsum needs the graph input `input_ids` ([batch, tokens])")
    channel_max = channel_abs_max(list(groups)) if alpha > 0 else {}
    _add_shared(graph)
    for index, (source, nodes) in enumerate(groups.items()):
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        _rewrite_group(graph, f"rowwise{index}", source, nodes, weights,
                       channel_max.get(source), alpha, weight_range)
        for n in nodes:
            graph.initializer.remove(inits[n.input[1]])
    if not any(o.domain == _MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS, 1))
    return RowwiseResult(len(groups), sum(len(n) for n in groups.values()))


def _add_shared(graph: onnx.GraphProto) -> None:
    """Tensors every group uses, computed once per run: every activation has batch x tokens rows,
    so one zero-point vector (QuantizeLinear wants one per row) and one [batch, tokens] shape serve
    all. Fewer nodes matter: at batch 1 each costs a few microseconds whatever it computes."""
    graph.initializer.extend([
        numpy_helper.from_array(np.array(1 / 127, np.float32), "rowwise_inv127"),
        numpy_helper.from_array(np.array(1.0, np.float32), "rowwise_one"),
        numpy_helper.from_array(np.array(128, np.uint8), "rowwise_zp"),
        numpy_helper.from_array(np.array([1], np.int64), "rowwise_axis1"),
    ])
    shared = [
        helper.make_node("Shape", ["input_ids"], ["rowwise_bs"]),
        helper.make_node("ReduceProd", ["rowwise_bs"], ["rowwise_rows"], keepdims=1),
        helper.make_node("ConstantOfShape", ["rowwise_rows"], ["rowwise_zp_rows"],
                         value=helper.make_tensor("v", TensorProto.UINT8, [1], [128])),
    ]
    for offset, node in enumerate(shared):
        node.name = f"rowwise/{node.op_type}"
        graph.node.insert(offset, node)


def _rewrite_group(graph: onnx.GraphProto, name: str, source: str, nodes: Sequence[onnx.NodeProto],
                   weights: Sequence[np.ndarray], channel_max: np.ndarray | None, alpha: float,
                   weight_range: WeightRange) -> None:
    k = weights[0].shape[0]
    w = np.concatenate(weights, axis=1)  # one GEMM for Q, K and V
    widths = [wt.shape[1] for wt in weights]
    new: list[onnx.NodeProto] = []
    inits = [numpy_helper.from_array(np.array([-1, k], np.int64), f"{name}_2d"),
             numpy_helper.from_array(np.array([w.shape[1]], np.int64), f"{name}_n")]
    x = f"{name}_x2d"
    new.append(helper.make_node("Reshape", [source, f"{name}_2d"], [x]))
    if channel_max is not None:
        smooth = _smoothing(channel_max, np.abs(w).max(axis=1), alpha)
        w = w * smooth[:, None]
        inits.append(numpy_helper.from_array((1 / smooth).astype(np.float32), f"{name}_inv_smooth"))
        new.append(helper.make_node("Mul", [x, f"{name}_inv_smooth"], [f"{name}_xs"]))
        x = f"{name}_xs"
    w8, w_scale = quantize_columns(w, weight_range)
    inits += [numpy_helper.from_array(w8, f"{name}_w8"),
              numpy_helper.from_array(w_scale, f"{name}_w_scale")]
    # No guard for an all-zero row: its scale is 0, QuantizeLinear's 0/0 gives some uint8, and
    # the final multiply by that same 0 scale returns the exact answer, a zero row.
    new += [
        helper.make_node("Abs", [x], [f"{name}_abs"]),
        helper.make_node("ReduceMax", [f"{name}_abs"], [f"{name}_amax"], axes=[1], keepdims=0),
        helper.make_node("Mul", [f"{name}_amax", "rowwise_inv127"], [f"{name}_r"]),
        helper.make_node("QuantizeLinear", [x, f"{name}_r", "rowwise_zp_rows"], [f"{name}_q"], axis=0),
        helper.make_node("MatMulIntegerToFloat",
                         [f"{name}_q", f"{name}_w8", "rowwise_one", f"{name}_w_scale", "rowwise_zp"],
                         [f"{name}_y0"], domain=_MS),
        helper.make_node("Unsqueeze", [f"{name}_r", "rowwise_axis1"], [f"{name}_r2"]),
        helper.make_node("Mul", [f"{name}_y0", f"{name}_r2"], [f"{name}_y"]),
        # Back to [batch, tokens, N], then split when Q, K and V were concatenated.
        helper.make_node("Concat", ["rowwise_bs", f"{name}_n"], [f"{name}_shape"], axis=0),
    ]
    if len(nodes) == 1:
        new.append(helper.make_node("Reshape", [f"{name}_y", f"{name}_shape"], [nodes[0].output[0]]))
    else:
        inits.append(numpy_helper.from_array(np.array(widths, np.int64), f"{name}_widths"))
        new += [helper.make_node("Reshape", [f"{name}_y", f"{name}_shape"], [f"{name}_y3"]),
                helper.make_node("Split", [f"{name}_y3", f"{name}_widths"],
                                 [n.output[0] for n in nodes], axis=2)]
    graph.initializer.extend(inits)
    at = list(graph.node).index(nodes[0])
    for node in nodes:
        graph.node.remove(node)
    for offset, node in enumerate(new):
        node.name = f"{name}/{node.op_type}_{offset}"
        graph.node.insert(at + offset, node)


def quantize_columns(w: np.ndarray, weight_range: WeightRange) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights [K, N] and one float scale per column, scaled as `weight_range` says."""
    peak = np.abs(w).max(axis=0)
    if weight_range == "8bit":
        scale = peak / 127
    elif weight_range == "7bit":
        scale = peak / 63
    elif weight_range == "pairsum":
        # The largest |w[2j]| + |w[2j+1]| maps to 127; rounding adds at most 1 to a pair's sum.
        pairs = np.abs(np.pad(w, ((0, w.shape[0] % 2), (0, 0))))
        scale = (pairs[0::2] + pairs[1::2]).max(axis=0) / 127
    else:
        raise ExportError(f"weight_range must be one of {get_args(WeightRange)}, "
                          f"got {weight_range!r}")
    scale = np.maximum(scale, 1e-12).astype(np.float32)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    if weight_range == "pairsum":
        qp = np.abs(np.pad(q, ((0, q.shape[0] % 2), (0, 0))).astype(np.int32))
        if (qp[0::2] + qp[1::2]).max(initial=0) > _PAIR_LIMIT:  # cannot happen; the proof is cheap
            raise ExportError("pairsum weights: a pair exceeds the int16-safe sum; this is a bug")
    return q, scale


def _smoothing(act_max: np.ndarray, weight_max: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's s_j = max|X_j|^alpha / max|W_j|^(1-alpha), kept finite and positive."""
    act = np.maximum(act_max.astype(np.float64), 1e-5)
    wt = np.maximum(weight_max.astype(np.float64), 1e-5)
    return np.clip(act**alpha / wt ** (1 - alpha), 1e-2, 1e2).astype(np.float32)
