"""Step 2: build one ONNX graph from token ids to the final sentence embedding.

The whole sentence-transformers module stack (Transformer, the model's own Pooling, Dense layers
and, only where modules.json has it, Normalize) is traced by torch's exporter as the model itself
runs, so pooling and normalisation are fused into the graph and the runtime does no numpy
post-processing. The graph takes `input_ids` and `attention_mask` (right-padded, as the runtime
pads) and has one output, `sentence_embedding`.

torch's exporter is driven directly, not through optimum: optimum-onnx pins transformers below
4.58, and users run transformers 5. `tracing.py` holds the two adjustments tracing needs.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from fusembed._batching import PROMPT_TOKEN
from fusembed._errors import ExportError

from .resolve import ResolvedModel
from .tracing import eager_attention, fold_squeeze_ifs, traceable_masks

OUTPUT = "sentence_embedding"
INPUTS = ("input_ids", "attention_mask")
# onnx >= 1.23 stamps IR version 14 on models it builds; onnxruntime up to 1.31 refuses it. The
# graph uses nothing newer than IR 8 (opset 17), so we write the oldest version that holds it.
IR_VERSION = 8
OPSET = 17
# Two texts of different lengths: the example batch has a padded row, as real batches do.
_EXAMPLE_TEXTS = ("A short text.", "A somewhat longer example text, traced to build the graph.")


@dataclass(frozen=True)
class GraphResult:
    path: Path
    inputs: tuple[str, ...]
    output: str
    nodes: int
    opset: int


def build_fused_graph(st_model: Any, model: ResolvedModel, out_path: Path, *,
                      opset: int = OPSET) -> GraphResult:
    """Trace `st_model` (the loaded SentenceTransformer of `model`) to `out_path` as a
    single-output ONNX graph (`sentence_embedding`)."""
    import torch

    ids, mask = _example_inputs(st_model)
    module = _sentence_embedding_module(st_model, prompt_in_mask=not model.facts.include_prompt)
    if not model.facts.include_prompt:
        mask[0, :2] = PROMPT_TOKEN  # the trace takes the branch a prompt takes
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT: {0: "batch"}}
    with tempfile.TemporaryDirectory(prefix="fusembed-graph-") as work:
        traced = Path(work) / "traced.onnx"
        try:
            with warnings.catch_warnings(), traceable_masks(), eager_attention(st_model), torch.no_grad():
                _silence_tracing_noise()
                torch.onnx.export(module, (ids, mask), str(traced), input_names=list(INPUTS),
                                  output_names=[OUTPUT], dynamic_axes=axes, opset_version=opset,
                                  do_constant_folding=True, dynamo=False)
        except Exception as exc:  # the tracer raises many types; the model name is what matters
            raise ExportError(f"torch could not export {model.source.model!r}: "
                              f"{type(exc).__name__}: {exc}") from exc
        graph = onnx.load(str(traced))

    outputs = [o.name for o in graph.graph.output]
    if outputs != [OUTPUT]:
        raise ExportError(f"exported graph has outputs {outputs}, expected [{OUTPUT!r}]")
    fold_squeeze_ifs(graph)
    prune_unused(graph)
    graph.ir_version = min(graph.ir_version, IR_VERSION)
    onnx.checker.check_model(graph)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(out_path))
    return GraphResult(
        path=out_path, inputs=tuple(i.name for i in graph.graph.input), output=OUTPUT,
        nodes=len(graph.graph.node), opset=opset,
    )


def _example_inputs(st_model: Any) -> tuple[Any, Any]:
    """Token ids and mask of the example texts, right-padded as the runtime pads."""
    import torch

    tokenizer = st_model.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        batch = tokenizer(list(_EXAMPLE_TEXTS), padding=True, truncation=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    return batch["input_ids"].to(torch.int64), batch["attention_mask"].to(torch.int64)


def _sentence_embedding_module(st_model: Any, *, prompt_in_mask: bool = False) -> Any:
    """The module stack as one function of (input_ids, attention_mask).

    With `prompt_in_mask` (a model whose Pooling has include_prompt false), attention_mask holds
    PROMPT_TOKEN at the prompt's tokens: the transformer attends to them as to any token, and
    the Pooling module sees them masked out, as sentence-transformers masks them when it is
    given the prompt's length.
    """
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, stack: Any) -> None:
            super().__init__()
            self.stack = stack

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            if not prompt_in_mask:
                features = self.stack({"input_ids": input_ids, "attention_mask": attention_mask})
                return features["sentence_embedding"]
            features = {"input_ids": input_ids, "attention_mask": (attention_mask != 0).to(torch.int64)}
            for module in self.stack:
                if type(module).__name__ == "Pooling":
                    features["attention_mask"] = (attention_mask == 1).to(torch.int64)
                features = module(features)
            return features["sentence_embedding"]

    return SentenceEmbedding(st_model).eval()


def _silence_tracing_noise() -> None:
    """Hide warnings that tracing always emits and the user cannot act on.

    The TorchScript exporter is deprecated in torch >= 2.9, and tracing warns at every Python
    branch on a tensor's shape; the parity check is what proves the trace right, so these only
    bury the export's own report.
    """
    import torch

    warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|torch)\.")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx\.")


def prune_unused(model: onnx.ModelProto) -> None:
    """Drop nodes, initializers and inputs that no longer feed the kept output."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    inputs = [i for i in graph.input if i.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
