"""The export pipeline: resolve -> fused graph -> optimise -> fp32 bundle -> verify parity ->
int8 and fp16 variants, each measured and gated -> publish."""

from __future__ import annotations

import ctypes
import gc
import importlib.metadata as md
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from fusembed._doctor import CheckSet, measure_variants
from fusembed._encoder import Encoder
from fusembed._errors import BundleError, ExportError
from fusembed._manifest import Manifest, Parity, Variant
from tokenizers import Tokenizer

from .bundle import TOKENIZER_NAME, pad_token_id, prepare_tokenizer, staged_directory, write_manifest
from .fp16 import convert_fp16
from .graph import build_fused_graph
from .optimize import OptimizeResult, optimize_graph
from .options import FILES, ExportOptions
from .quantize import SCHEMES, Calibration, quantize_int8, timed
from .resolve import ModelFacts, ResolvedModel, resolve_model
from .texts import varied_texts
from .verify import (
    Reference,
    compare,
    gate,
    gate_quality,
    load_sentence_transformer,
    measure_quality,
    reference_for,
    strips_whitespace,
)

CHECK_NAME = "check.json"
_PENDING = Parity(texts=0, max_abs_diff=0.0, min_cosine=0.0, mean_cosine=0.0, tokenization_match=False)
T = TypeVar("T")


@dataclass(frozen=True)
class ExportReport:
    """What `export_model` did, step by step."""

    bundle: Path
    model: ResolvedModel
    manifest: Manifest
    optimize: OptimizeResult
    rejected: dict[str, str] = field(default_factory=dict)  # variant -> why it was not written
    seconds: dict[str, float] = field(default_factory=dict)


def export_model(
    model: str | Path,
    out_dir: str | Path,
    *,
    options: ExportOptions = ExportOptions(),
    log: Callable[[str], None] = lambda _msg: None,
) -> ExportReport:
    """Export a sentence-transformers model to a verified fusembed bundle at `out_dir`.

    The fp32 variant must pass its parity gate or nothing is written. The int8 and fp16 variants
    are written only if they meet their quality budgets; a variant that misses is reported in
    `ExportReport.rejected` (and logged) with the figures, and the bundle is written without it.

    Raises:
        ExportError: the model cannot be resolved or exported, or fp32 fails its parity gate.
            Nothing is written to `out_dir` in that case.
    """
    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable[[], T], what: str = "") -> T:
        log(f"{name}{f' ({what})' if what else ''} …")
        start = time.perf_counter()
        result = fn()
        release_memory()
        seconds[name] = round(time.perf_counter() - start, 2)
        if seconds[name] >= 1:  # a long export shows where its time goes as it goes
            log(f"  {name}: {seconds[name]:.1f} s")
        return result

    with staged_directory(Path(out_dir), overwrite=options.overwrite) as staging, \
            tempfile.TemporaryDirectory(prefix="fusembed-export-") as tmp:
        work = Path(tmp)
        resolved = step("resolve", lambda: resolve_model(
            model, revision=options.revision, cache_dir=options.cache_dir, similarity=options.similarity))
        facts = resolved.facts
        log(f"  {resolved.source.model} ({resolved.source.kind}): dim {facts.dim}, "
            f"pooling {facts.pooling}, normalized {facts.normalized}, "
            f"max_seq_length {facts.max_seq_length}, similarity {facts.similarity}")
        st_model = step("load sentence-transformers", lambda: load_sentence_transformer(resolved.path))
        raw = work / "fused.onnx"
        graph = step("fused graph", lambda: build_fused_graph(st_model, resolved, raw))
        fp32_path = staging / FILES["fp32"]
        if options.optimize:
            opt = step("optimise", lambda: optimize_graph(raw, fp32_path, facts))
            log(f"  fusions: {opt.fusions or opt.reason}")
        else:
            fp32_path.write_bytes(raw.read_bytes())
            opt = OptimizeResult(fp32_path, False, reason="disabled by option")
        strip = strips_whitespace(st_model)
        tokenizer = step("tokenizer", lambda: prepare_tokenizer(
            resolved.path, facts, staging / TOKENIZER_NAME, strip=strip))
        pad_id = pad_token_id(tokenizer, resolved.path)
        variants = {"fp32": Variant(precision="fp32", file=FILES["fp32"], parity=_PENDING,
                                    optimized=opt.applied, fusions=opt.fusions, scheme="fp32")}
        manifest = Manifest(
            source=resolved.source, dim=facts.dim, pooling=facts.pooling,  # type: ignore[arg-type]
            normalized=facts.normalized, similarity=facts.similarity,  # type: ignore[arg-type]
            max_seq_length=facts.max_seq_length, inputs=graph.inputs, output=graph.output,
            pad_token_id=pad_id, tokenizer=TOKENIZER_NAME, variants=variants, files={},
            exporter=_versions(graph.opset, facts.similarity_source),
            prompts=facts.prompts, default_prompt_name=facts.default_prompt_name,
            include_prompt=facts.include_prompt, prompt_in_mask=not facts.include_prompt,
        )
        write_manifest(staging, manifest)
        reference = step("parity reference", lambda: reference_for(st_model, options.parity_texts, facts),
                         f"sentence-transformers on {len(options.parity_texts)} parity texts, with token ids")

        def check_fp32() -> Parity:
            parity, worst = compare(reference, _load(staging, "fp32"))
            gate(parity, worst, "fp32", options.min_cosine)
            return parity

        parity = step("verify fp32 parity", check_fp32)
        log(f"  fp32: min cosine {parity.min_cosine:.7f}, max abs diff {parity.max_abs_diff:.2e} "
            f"over {parity.texts} texts")
        variants["fp32"] = replace(variants["fp32"], parity=parity)

        rejected: dict[str, str] = {}
        if {"int8", "fp16"} & set(options.variants):
            texts = varied_texts(options.quality_texts, seed=1)
            quality_ref = step("torch reference",
                               lambda: reference_for(st_model, texts, facts, token_ids=False),
                               f"sentence-transformers on {len(texts)} held-out texts")
            st_model = None  # every torch reference is taken: its weights and caches can go
            release_memory()
            candidates: dict[str, Callable[[], Variant]] = {}
            if "int8" in options.variants:
                candidates["int8"] = lambda: _int8(raw, fp32_path, staging, work, tokenizer, pad_id,
                                                   facts, options, log)
            if "fp16" in options.variants:
                candidates["fp16"] = lambda: _fp16(fp32_path, staging)
            for name, build in candidates.items():
                try:
                    variant = step(f"{name} variant", build, (
                        f"up to {len(SCHEMES)} schemes, each checked on "
                        f"{options.calibration_texts} calibration texts"
                        if name == "int8" else "float16 weights, pooling tail in float32"))
                    variants[name] = variant
                    write_manifest(staging, replace(manifest, variants=variants))
                    variants[name] = step(f"verify {name}", lambda v=variant: _measure(  # type: ignore[misc]
                        v, staging, reference, quality_ref, facts.similarity, options, log),
                        f"{len(quality_ref.texts)} held-out texts against sentence-transformers")
                except Exception as exc:  # a failed variant costs that variant, not the fp32 bundle
                    why = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
                    rejected[name] = why
                    log(f"  {name} not written: {why}")
                    variants.pop(name, None)
                    (staging / FILES[name]).unlink(missing_ok=True)
        check = _check_set(reference, quality_ref if {"int8", "fp16"} & set(options.variants) else None,
                           options.check_texts)
        (staging / CHECK_NAME).write_text(check.to_json(), encoding="utf-8")
        manifest = replace(manifest, check=CHECK_NAME)
        write_manifest(staging, replace(manifest, variants=variants))
        variants = step("measure on this CPU", lambda: _measure_here(staging, variants, check, log))
        if "fp32" not in options.variants:
            if len(variants) == 1:
                raise ExportError(f"none of the requested variants {options.variants} met its budget: "
                                  + "; ".join(rejected.values()))
            (staging / FILES["fp32"]).unlink()
            del variants["fp32"]
        final = write_manifest(staging, replace(manifest, variants=variants))
    return ExportReport(Path(out_dir).resolve(), resolved, final, opt, rejected, seconds)


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system.

    Each step frees its graphs (hundreds of MB for a base-size model), but glibc keeps freed heap
    pages mapped: after tracing all-mpnet-base-v2 the process held 1.9 GB where 0.96 GB was live.
    `malloc_trim` returns them, so the next step's peak starts from what is live. A no-op where
    the C library is not glibc.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _check_set(parity: Reference, held_out: Reference | None, n: int) -> CheckSet:
    texts, emb = list(parity.texts), [parity.embeddings]
    if held_out is not None and n > 0:
        texts += held_out.texts[:n]
        emb.append(held_out.embeddings[:n])
    return CheckSet(tuple(texts), np.concatenate(emb).astype(np.float32),
                    f"sentence-transformers {_version('sentence-transformers')} "
                    f"(torch {_version('torch')}, fp32, CPU)")


def _measure_here(staging: Path, variants: dict[str, Variant], check: CheckSet,
                  log: Callable[[str], None]) -> dict[str, Variant]:
    """Time the CPU variants on the check texts in paired rounds: the first measurements `auto`
    decides by, for CPUs of this machine's class."""
    encoders: dict[str, Encoder] = {
        name: _load(staging, name) for name in ("fp32", "int8") if name in variants}
    measured = measure_variants(encoders, check.texts, check.embeddings, rounds=5, by="export")
    for name, m in measured.items():
        log(f"  {name} on {m.cpu} ({m.isa}, {m.threads} threads): {m.sentences_per_s:.0f} sentences/s, "
            f"batch-1 {m.batch1_ms:.2f} ms, min cosine {m.min_cosine:.5f}")
    return {name: replace(v, measurements=(measured[name],)) if name in measured else v
            for name, v in variants.items()}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def _load(bundle: Path, precision: str) -> Encoder:
    try:
        return Encoder(bundle, precision=precision, verify=False)  # type: ignore[arg-type]
    except BundleError as exc:
        raise ExportError(f"the bundle just written does not load: {exc}") from None


def _int8(raw: Path, fp32: Path, staging: Path, work: Path, tokenizer: Tokenizer, pad_id: int,
          facts: ModelFacts, options: ExportOptions, log: Callable[[str], None]) -> Variant:
    base = work / "quant_base.onnx"
    timed(log, "fp32 graph fused for quantisation",
          lambda: optimize_graph(raw, base, facts, for_quantization=True))
    calibration = timed(log, f"fp32 graph on {options.calibration_texts} calibration texts",
                        Calibration.build, tokenizer, varied_texts(options.calibration_texts, seed=99),
                        fp32, pad_id)
    result = quantize_int8(fp32, base, staging / FILES["int8"], calibration,
                           min_mean_cosine=options.int8_min_mean_cosine,
                           min_cosine=options.int8_min_cosine, log=log)
    return Variant(precision="int8", file=FILES["int8"], parity=_PENDING, optimized=True,
                   scheme=result.scheme, token_multiple=result.token_multiple, selection={
                       "reason": result.reason,
                       "candidates": [asdict(c) for c in result.candidates]})


def _fp16(fp32: Path, staging: Path) -> Variant:
    result = convert_fp16(fp32, staging / FILES["fp16"])
    return Variant(precision="fp16", file=FILES["fp16"], parity=_PENDING, optimized=True,
                   scheme="fp16 (pooling tail fp32: " + ", ".join(result.kept_fp32) + ")",
                   verified_on="cpu: the fp16 graph run by the CPU provider; the CUDA kernels are "
                               "checked by tests/export/test_variants.py::test_fp16_on_cuda_matches_torch "
                               "on a GPU machine")


def _measure(variant: Variant, staging: Path, reference: Reference, quality_ref: Reference,
             similarity: str, options: ExportOptions, log: Callable[[str], None]) -> Variant:
    encoder = _load(staging, variant.precision)
    parity, _ = compare(reference, encoder)
    quality = measure_quality(quality_ref, encoder, similarity)
    log(f"  {variant.precision}: mean cosine {quality.mean_cosine:.5f}, min {quality.min_cosine:.5f}, "
        f"top-10 agreement {quality.top10_agreement:.3f}, batch invariance {quality.batch_invariance:.6f}")
    int8 = variant.precision == "int8"
    gate_quality(
        quality, variant.precision,
        min_mean=options.int8_min_mean_cosine if int8 else options.fp16_min_cosine,
        min_cosine=options.int8_min_cosine if int8 else options.fp16_min_cosine,
        min_top10=options.int8_min_top10, min_batch_invariance=options.min_batch_invariance,
    )
    return replace(variant, parity=parity, quality=quality)


def _versions(opset: int, similarity_source: str) -> dict[str, str]:
    info = {"opset": str(opset), "similarity_source": similarity_source}
    for dist in ("fusembed", "torch", "transformers", "sentence-transformers", "tokenizers",
                 "onnx", "onnxruntime"):
        try:
            info[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return info
