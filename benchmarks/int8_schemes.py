"""int8 schemes side by side on one bundle: what each costs in fidelity, batch dependence, size, speed.

The measurement behind export/quantize.py's candidate order. Baselines are onnxruntime's stock
dynamic quantisation (per-tensor and per-channel weights), whose activation scale is computed over
each padded batch; then the three schemes fusembed's export chooses from.

    .venv/bin/python benchmarks/int8_schemes.py BUNDLE [--output benchmarks/results/int8_schemes.md]

BUNDLE must have been exported by this checkout (it reads `model.onnx` and rebuilds the rest).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
from fusembed import read_manifest
from fusembed.export import quantize
from fusembed.export.graph import IR_VERSION, build_fused_graph
from fusembed.export.optimize import optimize_graph
from fusembed.export.resolve import EMBEDDED, ModelFacts, resolve_model
from fusembed.export.texts import varied_texts
from fusembed.export.verify import load_sentence_transformer
from harness import Contention, best_pass_seconds, command_line, machine, short_texts
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer
from vectors import row_cosine

FLOAT_DEFAULT = {"DefaultTensorType": onnx.TensorProto.FLOAT}


def batch_dependence(model: Path, tokenizer: Tokenizer, pad_id: int, texts: list[str]) -> float:
    """Min cosine of each text run alone vs. inside one unsorted padded batch of all of them."""
    alone = quantize.Calibration.build(tokenizer, texts, model, pad_id, batch_size=1)
    together = quantize.Calibration.build(tokenizer, texts, model, pad_id, batch_size=len(texts))
    return float(row_cosine(alone.reference, together.reference).min())


def speed(model: Path, tokenizer: Tokenizer, pad_id: int, texts: list[str]) -> float:
    """Sentences per second at batch 32 (batches in input order), the best of 3 passes."""
    calib = quantize.Calibration.build(tokenizer, texts, model, pad_id, batch_size=32)
    session = quantize._session(model)

    def one_pass() -> None:
        for feeds in calib.feeds:
            session.run(None, feeds)

    return len(texts) / best_pass_seconds(one_pass, warmup=0)


def skipln_base(src: Path, dst: Path, facts: ModelFacts) -> None:
    """The quantisation base as it was before: SkipLayerNormalization fused (for the ablation)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_multi_head_attention = True
    options.enable_embed_layer_norm = False
    optimized = optimize_model(str(src), model_type="bert", num_heads=facts.num_heads,
                               hidden_size=facts.hidden_size, opt_level=0, optimization_options=options)
    optimized.model.ir_version = min(optimized.model.ir_version, IR_VERSION)
    optimized.save_model_to_file(str(dst))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    manifest = read_manifest(args.bundle)
    tokenizer = Tokenizer.from_file(str(args.bundle / manifest.tokenizer))  # truncation included
    pad_id = manifest.pad_token_id
    fp32 = args.bundle / manifest.variants["fp32"].file
    eval_texts = varied_texts(600, seed=21)
    threads = machine().usable_cores
    contention = Contention.start(threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        embedded = {hub: name for name, (_, hub) in EMBEDDED.items()}
        src = manifest.source
        model = resolve_model(embedded[src.model] if src.kind == "embedded" else src.model,
                              revision=src.revision if src.kind == "hub" else None)
        build_fused_graph(load_sentence_transformer(model.path), model, work / "raw.onnx")
        optimize_graph(work / "raw.onnx", work / "base.onnx", model.facts, for_quantization=True)
        skipln_base(work / "raw.onnx", work / "base-skipln.onnx", model.facts)
        calib = quantize.Calibration.build(tokenizer, varied_texts(256, seed=99), fp32, pad_id)
        reference = quantize.Calibration.build(tokenizer, eval_texts, fp32, pad_id)
        builders: dict[str, Callable[[Path], object]] = {
            "fp32 (reference)": lambda p: p.write_bytes(fp32.read_bytes()),
            "ort dynamic, per-tensor weights": lambda p: quantize_dynamic(
                fp32, p, weight_type=QuantType.QInt8, extra_options=FLOAT_DEFAULT),
            "ort dynamic, per-channel weights": lambda p: quantize_dynamic(
                fp32, p, weight_type=QuantType.QInt8, per_channel=True, extra_options=FLOAT_DEFAULT),
            "w7a8-static": lambda p: quantize._w7a8_static(fp32, p, calib, exclude=None),
            "w7a8-static-ffn2-fp32": lambda p: quantize._w7a8_static(
                fp32, p, calib, exclude=quantize._FFN2),
            "w8a8-rowwise-pairsum, no SmoothQuant (alpha 0)": lambda p: quantize._rowwise_pairsum(
                work / "base.onnx", p, calib, alpha=0.0),
            "w8a8-rowwise-pairsum, SkipLayerNormalization kept fused": lambda p: quantize._rowwise_pairsum(
                work / "base-skipln.onnx", p, calib),
            "w8a8-rowwise with 7-bit weights": lambda p: quantize._rowwise_pairsum(
                work / "base.onnx", p, calib, weights="7bit"),
            "w8a8-rowwise with 8-bit weights (saturates on AVX2)": lambda p: quantize._rowwise_pairsum(
                work / "base.onnx", p, calib, weights="8bit"),
            "w8a8-rowwise-pairsum": lambda p: quantize._rowwise_pairsum(work / "base.onnx", p, calib),
            "w8-blockwise-128": lambda p: quantize._w8_blockwise(work / "base.onnx", p, block_size=128),
            "w8-blockwise-32": lambda p: quantize._w8_blockwise(work / "base.onnx", p, block_size=32),
        }
        rows: list[str] = []
        for name, build in builders.items():
            path = work / f"{len(rows)}.onnx"
            build(path)
            cos = row_cosine(reference.reference, quantize.run_graph(path, reference.feeds))
            dependence = batch_dependence(path, tokenizer, pad_id, eval_texts[:64])
            sps = speed(path, tokenizer, pad_id, short_texts(512))
            rows.append(f"| {name} | {cos.mean():.5f} | {cos.min():.5f} | {dependence:.6f} "
                        f"| {path.stat().st_size / 1e6:.1f} | {sps:.0f} |")
            print(rows[-1], file=sys.stderr)
    text = "\n".join([
        f"# int8 schemes on {manifest.source.model}",
        "",
        f"- command: `{command_line()}`",
        f"- {machine().line(threads)}",
        f"- {contention.report()} (speed column only)",
        "- cosine: against the fp32 graph on 600 held-out varied texts; batch dependence: min cosine of "
        "64 texts alone vs. in one padded batch (1.0 = independent); speed: 512 short sentences, batch 32",
        "",
        "| scheme | mean cosine | min cosine | batch dependence | MB | sentences/s |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
