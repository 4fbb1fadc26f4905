"""The export pipeline: resolve -> fused graph -> optimise -> bundle -> verify parity -> publish."""

from __future__ import annotations

import importlib.metadata as md
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fusembed._errors import BundleError, ExportError
from fusembed._manifest import Manifest, Parity, Variant

from .bundle import (
    TOKENIZER_NAME,
    pad_token_id,
    prepare_tokenizer,
    staged_directory,
    with_variants,
    write_manifest,
)
from .graph import GraphResult, build_fused_graph
from .optimize import OptimizeResult, optimize_graph
from .resolve import ResolvedModel, resolve_model
from .texts import EDGE_TEXTS
from .verify import compare, gate, load_sentence_transformer, reference_for

FP32_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportOptions:
    """Choices for `export_model`. Defaults are what the CLI uses."""

    revision: str | None = None
    cache_dir: str | Path | None = None
    similarity: str | None = None  # override when the model's files do not say
    optimize: bool = True
    min_cosine: float = 0.99999  # fp32 parity gate against sentence-transformers
    overwrite: bool = False
    parity_texts: tuple[str, ...] = EDGE_TEXTS


@dataclass(frozen=True)
class ExportReport:
    """What `export_model` did, step by step."""

    bundle: Path
    model: ResolvedModel
    graph: GraphResult
    optimize: OptimizeResult
    manifest: Manifest
    seconds: dict[str, float] = field(default_factory=dict)


def export_model(
    model: str | Path,
    out_dir: str | Path,
    *,
    options: ExportOptions = ExportOptions(),
    log: Callable[[str], None] = lambda _msg: None,
) -> ExportReport:
    """Export a sentence-transformers model to a verified fusembed bundle at `out_dir`.

    Raises:
        ExportError: the model cannot be resolved or exported, or a variant fails its parity
            gate. Nothing is written to `out_dir` in that case.
    """
    out = Path(out_dir)
    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> object:
        log(f"{name} …")
        start = time.perf_counter()
        result = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    with staged_directory(out, overwrite=options.overwrite) as staging, \
            tempfile.TemporaryDirectory(prefix="fusembed-export-") as work:
        resolved: ResolvedModel = step("resolve", lambda: resolve_model(
            model, revision=options.revision, cache_dir=options.cache_dir,
            similarity=options.similarity))  # type: ignore[assignment]
        facts = resolved.facts
        log(f"  {resolved.source.model} ({resolved.source.kind}): dim {facts.dim}, "
            f"pooling {facts.pooling}, normalized {facts.normalized}, "
            f"max_seq_length {facts.max_seq_length}, similarity {facts.similarity}")
        raw = Path(work) / "fused.onnx"
        graph: GraphResult = step("fused graph", lambda: build_fused_graph(resolved, raw))  # type: ignore[assignment]
        target = staging / FP32_FILE
        if options.optimize:
            opt: OptimizeResult = step("optimise", lambda: optimize_graph(raw, target, facts))  # type: ignore[assignment]
            log(f"  fusions: {opt.fusions or opt.reason}")
        else:
            raw.replace(target)
            opt = OptimizeResult(target, False, reason="disabled by option")
        tokenizer = prepare_tokenizer(resolved.path, facts, staging / TOKENIZER_NAME)
        pending = Parity(texts=0, max_abs_diff=0.0, min_cosine=0.0, mean_cosine=0.0,
                         tokenization_match=False)
        fp32 = Variant(precision="fp32", file=FP32_FILE, parity=pending, optimized=opt.applied,
                       fusions=opt.fusions)
        draft = write_manifest(staging, Manifest(
            source=resolved.source, dim=facts.dim, pooling=facts.pooling,  # type: ignore[arg-type]
            normalized=facts.normalized, similarity=facts.similarity,  # type: ignore[arg-type]
            max_seq_length=facts.max_seq_length, inputs=graph.inputs, output=graph.output,
            pad_token_id=pad_token_id(tokenizer, resolved.path), tokenizer=TOKENIZER_NAME,
            variants={"fp32": fp32}, files={}, exporter=_versions(graph.opset, facts.similarity_source),
        ))

        def verify() -> Parity:
            st_model = load_sentence_transformer(resolved.path)
            reference = reference_for(st_model, options.parity_texts, facts)
            try:
                parity, worst = compare(reference, staging, "fp32")
            except BundleError as exc:
                raise ExportError(f"the bundle just written does not load: {exc}") from None
            gate(parity, worst, "fp32", options.min_cosine)
            return parity

        parity: Parity = step("verify parity", verify)  # type: ignore[assignment]
        log(f"  fp32: min cosine {parity.min_cosine:.7f}, max abs diff {parity.max_abs_diff:.2e} "
            f"over {parity.texts} texts")
        manifest = write_manifest(staging, with_variants(draft, {"fp32": Variant(
            precision="fp32", file=FP32_FILE, parity=parity, optimized=opt.applied,
            fusions=opt.fusions)}))
    return ExportReport(out.resolve(), resolved, graph, opt, manifest, seconds)


def _versions(opset: int, similarity_source: str) -> dict[str, str]:
    info = {"opset": str(opset), "similarity_source": similarity_source}
    for dist in ("fusembed", "torch", "transformers", "sentence-transformers", "optimum-onnx",
                 "onnx", "onnxruntime"):
        try:
            info[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return info
