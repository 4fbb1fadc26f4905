"""Fusions onnxruntime's optimiser does not have: attention with an additive position bias.

MPNet adds a relative-position bias to every layer's attention scores (T5-style buckets, one
table shared by all layers), a pattern onnxruntime's BERT fusion does not match. Left unfused,
each layer runs its attention as nine separate nodes (two 4D Transposes, two batched MatMuls,
scale, two Adds, Softmax, the output Transpose). `fuse_biased_attention` rewrites each such layer
into one `com.microsoft.MultiHeadAttention` node: the Q, K and V projections stay separate MatMuls
(so the int8 step quantises them as before) and the bias plus padding mask enter as its
`attention_bias` input, computed once for all layers.

The matched pattern, per layer (names as torch traces MPNet):

    q = Transpose(Reshape(Add(MatMul(x, Wq), bq)))            # (B, H, S, D)
    k = Transpose(Reshape(Add(MatMul(x, Wk), bk)))            # (B, H, D, S) or (B, H, S, D)
    v = Transpose(Reshape(Add(MatMul(x, Wv), bv)))            # (B, H, S, D)
    scores = Add(Add(Div(MatMul(q, k), sqrt(D)), bias), mask) # either order of the two Adds
    out = Reshape(Transpose(MatMul(Softmax(scores), v)))      # (B, S, H * D)

The parity gate checks the fused graph against sentence-transformers like every other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import prune_unused


@dataclass
class _Graph:
    model: onnx.ModelProto

    def __post_init__(self) -> None:
        self.producer = {o: n for n in self.model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.inits = {t.name: t for t in self.model.graph.initializer}

    def parent(self, node: onnx.NodeProto, index: int, op: str) -> onnx.NodeProto | None:
        if index >= len(node.input):
            return None
        found = self.producer.get(node.input[index])
        return found if found is not None and found.op_type == op else None

    def only_child(self, node: onnx.NodeProto, op: str) -> onnx.NodeProto | None:
        children = self.consumers.get(node.output[0], [])
        return children[0] if len(children) == 1 and children[0].op_type == op else None

    def constant(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def perm(self, node: onnx.NodeProto) -> list[int]:
        return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _projection(g: _Graph, transpose: onnx.NodeProto | None) -> str | None:
    """The (B, S, H * D) projection feeding Reshape -> Transpose, or None."""
    if transpose is None:
        return None
    reshape = g.parent(transpose, 0, "Reshape")
    if reshape is None:
        return None
    add = g.parent(reshape, 0, "Add")
    matmul = add and (g.parent(add, 0, "MatMul") or g.parent(add, 1, "MatMul"))
    if add is None or matmul is None or matmul.input[1] not in g.inits:
        return None
    return str(add.output[0])


def _scaled_scores(g: _Graph, node: onnx.NodeProto) -> tuple[onnx.NodeProto, float] | None:
    """`node` as Div(MatMul, c) or Mul(MatMul, c): the MatMul and the scale it applies."""
    if node.op_type not in ("Div", "Mul"):
        return None
    matmul = g.parent(node, 0, "MatMul")
    value = g.constant(node.input[1])
    if matmul is None or value is None or value.size != 1:
        return None
    c = float(value.reshape(()))
    return matmul, (1.0 / c if node.op_type == "Div" else c)


def fuse_biased_attention(model: onnx.ModelProto, num_heads: int) -> int:
    """Rewrite every matching attention layer of `model` in place; return how many."""
    g = _Graph(model)
    graph = model.graph
    drop: set[int] = set()
    new_nodes: list[tuple[onnx.NodeProto, onnx.NodeProto]] = []  # (anchor to insert before, node)
    biases: dict[tuple[str, str], str] = {}
    fused = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        outer = g.parent(softmax, 0, "Add")
        if outer is None:
            continue
        match = None
        for i in (0, 1):
            inner = g.parent(outer, i, "Add")
            if inner is None:
                continue
            for j in (0, 1):
                scaled = g.producer.get(inner.input[j])
                hit = scaled is not None and _scaled_scores(g, scaled)
                if hit:
                    match = (inner, scaled, hit, inner.input[1 - j], outer.input[1 - i])
        if match is None:
            continue
        inner, scaled, (qk, scale), position_bias, mask = match
        pv = g.only_child(softmax, "MatMul")
        out_t = pv and g.only_child(pv, "Transpose")
        out_r = out_t and g.only_child(out_t, "Reshape")
        q_t, k_t = g.parent(qk, 0, "Transpose"), g.parent(qk, 1, "Transpose")
        v_t = pv and g.parent(pv, 1, "Transpose")
        q, k, v = _projection(g, q_t), _projection(g, k_t), _projection(g, v_t)
        if (pv is None or out_t is None or out_r is None or q is None or k is None or v is None
                or q_t is None or k_t is None or v_t is None):
            continue
        if (g.perm(q_t), g.perm(k_t), g.perm(v_t), g.perm(out_t)) != (
                [0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3], [0, 2, 1, 3]):
            continue
        key = (position_bias, mask)
        if key not in biases:  # bias + mask once, for every layer that shares them
            biases[key] = f"{position_bias}_plus_mask"
            new_nodes.append((outer, helper.make_node(
                "Add", [position_bias, mask], [biases[key]], name=f"{biases[key]}_add")))
        new_nodes.append((out_r, helper.make_node(
            "MultiHeadAttention", [q, k, v, "", "", biases[key]], [out_r.output[0]],
            name=f"{softmax.name}_mha", domain="com.microsoft", num_heads=num_heads, scale=scale)))
        for node in (q_t, k_t, v_t, qk, scaled, inner, outer, softmax, pv, out_t, out_r):
            drop.add(id(node))
        for transpose in (q_t, k_t, v_t):  # their Reshapes feed nothing else once these go
            reshape = g.producer[transpose.input[0]]
            if len(g.consumers.get(reshape.output[0], [])) == 1:
                drop.add(id(reshape))
        fused += 1
    if not fused:
        return 0
    inserts: dict[int, list[onnx.NodeProto]] = {}
    for anchor, node in new_nodes:
        inserts.setdefault(id(anchor), []).append(node)
    ordered: list[onnx.NodeProto] = []
    for node in graph.node:
        ordered.extend(inserts.get(id(node), []))
        if id(node) not in drop:
            ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    prune_unused(model)
    return fused
