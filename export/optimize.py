"""Step 3: apply onnxruntime's transformer fusions offline and save the optimised graph.

onnxruntime's own optimiser (`onnxruntime.transformers.optimizer`) knows the BERT patterns:
attention, skip-layer-norm, bias-GELU and embedding-layer-norm. Fusing at export means loading a
bundle does no heavy rewriting, and the fused graph is what parity is checked on.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import external_data_helper

from .fusions import fuse_biased_attention
from .graph import IR_VERSION
from .resolve import ModelFacts

# Encoder families whose attention/layer-norm patterns onnxruntime's "bert" fusions recognise.
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet"}
# Families whose attention adds a position bias to the scores, fused by `fusions.py`.
_BIASED_ATTENTION = {"mpnet"}
# Initializers above this size stay on disk while the optimiser runs (every weight matrix; biases,
# layer-norm weights and shape constants stay in memory, where shape inference reads them).
_ON_DISK_BYTES = 64 * 1024


@dataclass(frozen=True)
class OptimizeResult:
    path: Path
    applied: bool
    fusions: dict[str, int] = field(default_factory=dict)
    nodes_before: int = 0
    nodes_after: int = 0
    reason: str = ""


def optimize_graph(
    src: Path, dst: Path, facts: ModelFacts, *, for_quantization: bool = False
) -> OptimizeResult:
    """Fuse `src` into `dst`; report which fusions happened (and why none, if none).

    `for_quantization` keeps the Q/K/V projections as separate MatMuls (MultiHeadAttention
    instead of Attention) and the word-embedding lookup as a plain Gather, so the int8 step can
    quantise every weight matrix, the embedding table included. It also leaves residual adds
    and layer norms as standard Add and LayerNormalization: onnxruntime 1.32's CPU
    SkipLayerNormalization kernel took 820 us where Add + LayerNormalization took 225 us on the
    same tensors (profiled at batch 32), which matters once int8 GEMMs make everything else the
    bottleneck (docs/performance.md).
    """
    src, dst = src.resolve(), dst.resolve()  # the optimiser runs in another working directory
    before = len(onnx.load(str(src), load_external_data=False).graph.node)
    if facts.model_type not in _BERT_LIKE:
        dst.write_bytes(src.read_bytes())
        return OptimizeResult(dst, False, {}, before, before,
                              reason=f"no fusion rules for model_type {facts.model_type!r}")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    if for_quantization:
        options.use_multi_head_attention = True
        options.enable_embed_layer_norm = False
        options.enable_skip_layer_norm = False
    with tempfile.TemporaryDirectory(prefix="fusembed-optimise-") as work, \
            _weights_on_disk(src, Path(work)) as model:
        # opt_level=0: only the Python fusions; onnxruntime's own graph passes run at load time and
        # would otherwise bake this machine's CPU features into the file.
        optimized = optimize_model(
            model, model_type="bert", num_heads=facts.num_heads, hidden_size=facts.hidden_size,
            opt_level=0, use_gpu=False, optimization_options=options,
        )
        fusions = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        if facts.model_type in _BIASED_ATTENTION:
            fused = fuse_biased_attention(optimized.model, facts.num_heads)
            if fused:
                fusions["MultiHeadAttention"] = fusions.get("MultiHeadAttention", 0) + fused
        optimized.model.ir_version = min(optimized.model.ir_version, IR_VERSION)
        # The weights the fused graph still uses come back from disk, once, to be written into dst.
        external_data_helper.load_external_data_for_model(optimized.model, work)
        optimized.save_model_to_file(str(dst))
    after = len(optimized.model.graph.node)
    # onnxruntime's OnnxModel sits in reference cycles: without a collection its graphs stay alive
    # into the steps that follow.
    del optimized, model
    gc.collect()
    return OptimizeResult(dst, True, fusions, before, after)


@contextmanager
def _weights_on_disk(src: Path, work: Path) -> Iterator[onnx.ModelProto]:
    """`src` loaded with its weight matrices left in a file under `work` (the working directory
    while the context is open), so that the optimiser's copies of the graph do not copy them.

    onnxruntime's symbolic shape inference copies the whole model for every pass: with the
    weights in memory, fusing all-mpnet-base-v2 (440 MB of weights) took 3.3 GB on top of what
    the process held; with them on disk it copies only the graph. The fusions that read a weight
    (packing Q, K and V into one matrix) read it from the file, by a path relative to the working
    directory: onnx resolves external data only that way.
    """
    model = onnx.load(str(src))
    onnx.save_model(model, str(work / "graph.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=_ON_DISK_BYTES)
    del model
    model = onnx.load(str(work / "graph.onnx"), load_external_data=False)
    before = os.getcwd()
    os.chdir(work)
    try:
        yield model
    finally:
        os.chdir(before)
