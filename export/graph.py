"""Step 2: build one ONNX graph from token ids to the final sentence embedding.

optimum exports the whole sentence-transformers module stack (transformer, the model's own
pooling and, only where modules.json has it, Normalize) as traced by torch. That graph has two
outputs, `token_embeddings` and `sentence_embedding`; we keep only the second, so pooling and
normalisation are fused into the graph and the runtime does no numpy post-processing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
from fusembed._errors import ExportError

from .resolve import ResolvedModel

OUTPUT = "sentence_embedding"
# onnx >= 1.23 stamps IR version 14 on models it builds; onnxruntime up to 1.31 refuses it. The
# graph uses nothing newer than IR 8 (opset 17), so we write the oldest version that holds it.
IR_VERSION = 8
OPSET = 17


@dataclass(frozen=True)
class GraphResult:
    path: Path
    inputs: tuple[str, ...]
    output: str
    nodes: int
    opset: int


def build_fused_graph(model: ResolvedModel, out_path: Path, *, opset: int = OPSET) -> GraphResult:
    """Export `model` to `out_path` as a single-output ONNX graph (`sentence_embedding`)."""
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise ImportError("export needs optimum-onnx: pip install 'fusembed[export]'") from None

    with tempfile.TemporaryDirectory(prefix="fusembed-graph-") as work:
        # optimum prints progress and a validation banner; the pipeline reports instead.
        quiet = io.StringIO()
        optimum_log = logging.getLogger("optimum")
        level = optimum_log.level
        optimum_log.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
                _silence_tracing_noise()
                main_export(
                    str(model.path), work, task="feature-extraction",
                    library_name="sentence_transformers", opset=opset, device="cpu",
                    do_validation=False, no_post_process=True,
                )
        except Exception as exc:  # optimum raises many types; the model name is what matters
            raise ExportError(f"optimum could not export {model.source.model!r}: {exc}") from exc
        finally:
            optimum_log.setLevel(level)
        graph = onnx.load(str(Path(work) / "model.onnx"))

    outputs = [o.name for o in graph.graph.output]
    if OUTPUT not in outputs:
        raise ExportError(f"exported graph has outputs {outputs}, expected {OUTPUT!r}")
    keep = [o for o in graph.graph.output if o.name == OUTPUT]
    del graph.graph.output[:]
    graph.graph.output.extend(keep)
    _prune_unused(graph)
    graph.ir_version = min(graph.ir_version, IR_VERSION)
    onnx.checker.check_model(graph)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(out_path))
    return GraphResult(
        path=out_path, inputs=tuple(i.name for i in graph.graph.input), output=OUTPUT,
        nodes=len(graph.graph.node), opset=opset,
    )


def _silence_tracing_noise() -> None:
    """Hide warnings that tracing always emits and the user cannot act on.

    The TorchScript exporter (which optimum drives) is deprecated in torch >= 2.9, and tracing
    warns at every Python branch on a tensor's shape; the parity check is what proves the trace
    right, so these only bury the export's own report.
    """
    import torch

    warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|optimum)\.")


def _prune_unused(model: onnx.ModelProto) -> None:
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
