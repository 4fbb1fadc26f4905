"""Step 4b: the fp16 variant for the CUDA provider.

onnxruntime's own float16 converter halves the weights and activations. Inputs and the output
stay float32, and so does the pooling tail (everything after the last transformer layer): mean
pooling sums up to 512 token vectors, which fp16 cannot accumulate without loss. The fused
layer-norm and attention kernels accumulate in fp32 on CUDA by themselves.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import onnx

from .graph import IR_VERSION


@dataclass(frozen=True)
class Fp16Result:
    path: Path
    kept_fp32: tuple[str, ...]  # op types of the nodes left in float32


def convert_fp16(fp32: Path, out: Path) -> Fp16Result:
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fp32)))
    tail = _pooling_tail(model.model)
    model.convert_float_to_float16(keep_io_types=True, node_block_list=sorted(tail))
    model.model.ir_version = min(model.model.ir_version, IR_VERSION)
    model.save_model_to_file(str(out))
    kinds = sorted({n.op_type for n in model.model.graph.node if n.name in tail})
    del model
    gc.collect()  # OnnxModel sits in reference cycles: its graph would outlive this step
    return Fp16Result(out, tuple(kinds))


def _pooling_tail(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes downstream of the last transformer layer's output."""
    nodes = list(model.graph.node)
    for i, node in enumerate(nodes):
        if not node.name:
            node.name = f"fp16_unnamed_{i}"
    layer_ends = [n for n in nodes if n.op_type in ("SkipLayerNormalization", "LayerNormalization")]
    if not layer_ends:
        return set()
    frontier = set(layer_ends[-1].output)
    tail: set[str] = set()
    for node in nodes[nodes.index(layer_ends[-1]) + 1 :]:
        if frontier & set(node.input):
            tail.add(node.name)
            frontier.update(node.output)
    return tail
