"""Step 3: apply onnxruntime's transformer fusions offline and save the optimised graph.

onnxruntime's own optimiser (`onnxruntime.transformers.optimizer`) knows the BERT patterns:
attention, skip-layer-norm, bias-GELU and embedding-layer-norm. Fusing at export means loading a
bundle does no heavy rewriting, and the fused graph is what parity is checked on.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .fusions import fuse_biased_attention
from .graph import IR_VERSION
from .resolve import ModelFacts

# Encoder families whose attention/layer-norm patterns onnxruntime's "bert" fusions recognise.
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet"}
# Families whose attention adds a position bias to the scores, fused by `fusions.py`.
_BIASED_ATTENTION = {"mpnet"}


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
    # opt_level=0: only the Python fusions; onnxruntime's own graph passes run at load time and
    # would otherwise bake this machine's CPU features into the file.
    optimized = optimize_model(
        str(src), model_type="bert", num_heads=facts.num_heads, hidden_size=facts.hidden_size,
        opt_level=0, use_gpu=False, optimization_options=options,
    )
    fusions = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    if facts.model_type in _BIASED_ATTENTION:
        fused = fuse_biased_attention(optimized.model, facts.num_heads)
        if fused:
            fusions["MultiHeadAttention"] = fusions.get("MultiHeadAttention", 0) + fused
    optimized.model.ir_version = min(optimized.model.ir_version, IR_VERSION)
    optimized.save_model_to_file(str(dst))
    after = len(optimized.model.graph.node)
    # onnxruntime's OnnxModel sits in reference cycles: without a collection its graphs (2.6 GB
    # on all-mpnet-base-v2) stay alive into the steps that follow.
    del optimized
    gc.collect()
    return OptimizeResult(dst, True, fusions, before, after)
