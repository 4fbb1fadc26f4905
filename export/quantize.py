"""Step 4: the int8 variant for the CPU, chosen per model by measurement.

The int8 schemes are built in order of expected speed and each is measured against the fp32 graph
on calibration texts; the first one that meets the quality budget is kept. Every scheme
here gives a text the same embedding whatever else is in its batch: activation scales are either
calibrated constants or computed per row, never over a padded batch.

Every scheme's integer GEMMs give the same sums from the same inputs on every CPU. onnxruntime's
AVX2 int8 kernels add each pair of u8 x s8 products in 16 bits with saturation (vpmaddubsw), where
VNNI, AMX and ARM's dot products accumulate in 32 bits; weights are scaled so that no pair can
reach the int16 limit (`tests/export/test_int8_every_cpu.py` checks this on an emulated AVX2-only
CPU). The float parts between the GEMMs round differently per CPU, and an activation that lands
on the other side of a rounding step quantises one step apart, so vectors differ slightly between
CPUs (min cosine 0.999 on all-MiniLM-L6-v2); their quality against sentence-transformers does not,
so a quality gate measured once holds on every CPU the bundle is shipped to.

The schemes, measured on all-MiniLM-L6-v2 in `benchmarks/results/int8_schemes.md`:

- `w7a8-static` (compared by `benchmarks/int8_schemes.py`; the export does not try it, as it
  missed the budget on every real model measured): onnxruntime's own quantiser (per-channel
  weights in 7 bits, its `reduce_range`; QAttention, QEmbedLayerNormalization and int8 MatMul
  kernels), with each dynamic activation quantisation replaced by a constant scale calibrated on
  real (unpadded) tokens.
- `w7a8-static-ffn2-fp32` (likewise): the same with the feed-forward output projections kept in
  float; their input (the GELU output) has the widest activation range in BERT.
- `w8a8-rowwise-pairsum`: int8 weights per output column and int8 activations with one scale per
  token, computed in the graph, after SmoothQuant's per-channel migration (`export/rowwise.py`).
  Each weight column is scaled so that |w[2j]| + |w[2j+1]| <= 128: 8-bit precision for the
  weights that matter, and 255 * 128 fits int16. Embedding tables are int8 with one scale per
  row, as in the blockwise schemes.
- `w8-blockwise-128`, `w8-blockwise-32`: int8 weights in blocks of 128 or 32 values along the
  inner dimension (onnxruntime's MatMulNBits with int8 compute, which quantises each row of
  activations in blocks of the same length; its kernels multiply signed by signed values,
  |a| * |b| <= 127 * 128, and cannot saturate) and an int8 embedding table with one scale per row.
  Longer blocks mean fewer scales to apply, so blocks of 128 run faster (1.3x on
  all-mpnet-base-v2) and blocks of 32 hold more precision. Bundles exported before the block
  length was part of the name call blocks of 32 `w8-blockwise`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from fusembed._batching import pad_batch, pad_width_to
from fusembed._errors import ExportError
from fusembed._similarity import row_cosine
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from .graph import IR_VERSION
from .rowwise import WeightRange, quantize_rowwise

Feeds = dict[str, np.ndarray]
T = TypeVar("T")
# Each candidate runs first on this many calibration batches (16 texts each): enough to rule out
# a scheme whose minimum cosine already misses the budget, before it is run on all of them.
SCREEN_BATCHES = 2
# `Scheme.token_multiple` of w8-blockwise-128 (`Variant.token_multiple`): onnxruntime's
# AVX-512 VNNI kernel for MatMulNBits with blocks of 128 and int8 compute runs rows in pairs and an
# odd last row alone, and the two paths round the float sums differently in the last bit. A text
# of odd length then got other sums alone than in a batch, and one-bit differences, each moving
# some activations one int8 step, grew to cosine 0.9995 between a text alone and in a batch on
# all-mpnet-base-v2. Padded to an even width (one masked padding token), every row runs in a
# pair: 0.9999992, at 2, 5 and 16 threads. Padding inside the graph would hide the token shape
# from onnxruntime's SkipLayerNormalization fusion, whose absence cost that model min cosine 0.95.
# Texts per run of the activation-range probe (see `_channel_abs_max`).
PROBE_ROWS = 4
_FFN2 = re.compile(r"layer\.\d+/output/dense/MatMul")  # not attention/output/dense


@dataclass(frozen=True)
class Calibration:
    """Tokenized batches to calibrate and compare on, and the fp32 graph's embeddings for them."""

    feeds: tuple[Feeds, ...]
    reference: np.ndarray
    pad_id: int

    @classmethod
    def build(cls, tokenizer: Tokenizer, texts: Sequence[str], fp32: Path, pad_id: int,
              batch_size: int = 16, screen_batches: int = SCREEN_BATCHES) -> Calibration:
        """Batches of similar length, so that little of each run is padding: in text order every
        batch of 16 holds a long document (one text in six) and was padded to it, which made
        4.5 times the real tokens on all-mpnet-base-v2. The first `screen_batches` batches hold
        the first texts (those a candidate is screened on, see `quantize_int8`), sorted among
        themselves; the rest are sorted among themselves, shortest first."""
        rows = [e.ids for e in tokenizer.encode_batch(list(texts))]
        split = screen_batches * batch_size
        feeds = []
        for group in (rows[:split], rows[split:]):
            group = sorted(group, key=len)
            for start in range(0, len(group), batch_size):
                ids, mask = pad_batch(group[start : start + batch_size], pad_id)
                feeds.append({"input_ids": ids, "attention_mask": mask})
        return cls(tuple(feeds), run_graph(fp32, feeds), pad_id)

    def head(self, batches: int) -> Calibration:
        """The first `batches` batches and their reference rows."""
        feeds = self.feeds[:batches]
        return Calibration(feeds, self.reference[: self.rows(batches)], self.pad_id)

    def padded_to(self, multiple: int) -> Calibration:
        """The same batches with each token width padded up to a multiple of `multiple`, as an
        encoder pads them for a variant with that `token_multiple`."""
        if multiple == 1:
            return self
        feeds = []
        for f in self.feeds:
            ids, mask = pad_width_to(f["input_ids"], f["attention_mask"], multiple, self.pad_id)
            feeds.append({"input_ids": ids, "attention_mask": mask})
        return Calibration(tuple(feeds), self.reference, self.pad_id)

    def rows(self, batches: int) -> int:
        """How many texts the first `batches` batches hold."""
        return sum(len(f["input_ids"]) for f in self.feeds[:batches])

    @property
    def tokens(self) -> int:
        """Real (unpadded) tokens over all batches: what a run costs."""
        return int(sum(f["attention_mask"].sum() for f in self.feeds))


@dataclass(frozen=True)
class CandidateResult:
    scheme: str
    mean_cosine: float
    min_cosine: float
    size_mb: float
    passed: bool
    texts: int = 0  # the calibration texts it was measured on (fewer when ruled out early)


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    scheme: str
    reason: str
    candidates: tuple[CandidateResult, ...] = field(default_factory=tuple)
    token_multiple: int = 1  # the kept scheme's (`Scheme.token_multiple`)


def _session(model: Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # The arena keeps a session's activation peak until the session goes, so each session here
    # lives only through its own runs and only one is alive at a time; without the arena every run
    # maps its activations afresh, and those page faults doubled the calibration runs' wall time.
    # Memory patterns are planned per input shape, and every calibration batch has its own: with
    # them the arena grew by 4.5 GB over the 256 texts on all-mpnet-base-v2, without them by 2.4
    # GB, and the runs took less CPU time (70 s instead of 78 s).
    options.enable_mem_pattern = False
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _cosines_until_below(model: Path, calibration: Calibration, min_cosine: float,
                         skip: int = 0) -> np.ndarray:
    """Row cosines of `model` against the reference, batch by batch from batch `skip`, stopping
    after the first batch whose minimum is below `min_cosine`: from there the candidate cannot pass."""
    session = _session(model)
    wanted = {i.name for i in session.get_inputs()}
    cosines, row = [], calibration.rows(skip)
    for feeds in calibration.feeds[skip:]:
        got = session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
        cosines.append(row_cosine(calibration.reference[row : row + len(got)], got))
        row += len(got)
        if cosines[-1].min() < min_cosine:
            break
    return np.concatenate(cosines) if cosines else np.zeros(0, np.float32)


def timed(log: Callable[[str], None], what: str, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, then log what it did and how long it took: a base-size model spends minutes here."""
    start = time.perf_counter()
    result = fn(*args)
    log(f"    {what}: {time.perf_counter() - start:.1f} s")
    return result


def run_graph(model: Path | bytes, feeds: Sequence[Feeds]) -> np.ndarray:
    """The model's output for every batch of `feeds`, in their order."""
    session = _session(model)
    wanted = {i.name for i in session.get_inputs()}
    outs = {id(f): session.run(None, {k: v for k, v in f.items() if k in wanted})[0]
            for f in _longest_first(feeds)}
    return np.concatenate([outs[id(f)] for f in feeds]).astype(np.float32)


def quantize_int8(
    fp32: Path, quant_base: Path, out: Path, calibration: Calibration, *,
    min_mean_cosine: float, min_cosine: float, log: Callable[[str], None] = lambda _m: None,
) -> QuantizeResult:
    """Build the candidate schemes, measure each, keep the first that meets the budget at `out`.

    Each candidate is first built from, and run on, the first `SCREEN_BATCHES` calibration
    batches. Calibrated on the very texts it is measured on, a scheme is at its best there (no
    activation falls outside its calibrated range), so one whose minimum cosine misses the budget
    even then is ruled out without the full calibration and run, which on a base-size model take
    minutes each. A candidate that passes the screen is built again from all calibration texts
    (where it depends on them) and measured on all of them.
    """
    # The w7a8-static schemes are not tried: one
    # calibrated scale per activation tensor cannot hold the outlier channels of trained models,
    # and they missed the budget on every real model measured (all-MiniLM-L6-v2: mean 0.990,
    # all-mpnet-base-v2: 0.832), while building them costs minutes on a base-size model.
    # `benchmarks/int8_schemes.py` still compares them.
    results: list[CandidateResult] = []
    screened = len(calibration.feeds) > SCREEN_BATCHES
    for candidate in SCHEMES:
        scheme, calibrated, multiple = candidate.name, candidate.calibrated, candidate.token_multiple
        cal = calibration.padded_to(multiple)  # measured on the token widths the runtime gives it
        screen = cal.head(SCREEN_BATCHES)
        path = out.with_name(f"{out.stem}.{scheme}.onnx")
        first = screen if screened and calibrated else cal
        source = f" from {len(first.reference)} calibration texts" if calibrated else ""
        timed(log, f"{scheme}: built{source}", candidate.build, quant_base, path, first)
        got = timed(log, f"{scheme}: screened on {len(screen.reference)} texts",
                     run_graph, path, screen.feeds)
        cos = row_cosine(screen.reference, got)
        if cos.min() >= min_cosine and screened:
            if calibrated:
                timed(log, f"{scheme}: built again from all {len(cal.reference)} calibration texts",
                       candidate.build, quant_base, path, cal)
                skip = 0
            else:  # the same graph: its screen cosines stand, the rest of the texts follow
                skip = len(screen.feeds)
            rest = timed(log, f"{scheme}: run on the calibration texts", _cosines_until_below,
                          path, cal, min_cosine, skip)
            cos = np.concatenate([cos, rest]) if skip else rest
        result = CandidateResult(scheme, float(cos.mean()), float(cos.min()),
                                 round(path.stat().st_size / 1e6, 1),
                                 bool(cos.mean() >= min_mean_cosine and cos.min() >= min_cosine
                                      and len(cos) == len(cal.reference)), len(cos))
        results.append(result)
        verdict = "ok" if result.passed else "misses budget"
        if len(cos) < len(cal.reference):
            verdict += f" on its first {len(cos)} texts: ruled out"
        log(f"  int8 candidate {scheme}: mean cosine {result.mean_cosine:.5f}, "
            f"min {result.min_cosine:.5f}, {result.size_mb} MB -> {verdict}")
        if result.passed:
            path.replace(out)
            faster = [r.scheme for r in results[:-1]]
            reason = (f"first scheme, in order of expected speed, to meet mean cosine >= {min_mean_cosine} "
                      f"and min cosine >= {min_cosine} against fp32 on {len(cal.reference)} "
                      "calibration texts" + (f"; {', '.join(faster)} did not" if faster else ""))
            return QuantizeResult(out, scheme, reason, tuple(results), multiple)
        path.unlink()
    best = max(results, key=lambda r: r.min_cosine)
    raise ExportError(
        f"int8: no scheme met the budget (mean cosine >= {min_mean_cosine}, min >= {min_cosine}); "
        f"best was {best.scheme} with mean {best.mean_cosine:.5f}, min {best.min_cosine:.5f}. "
        "Use the fp32 variant, or lower int8_min_cosine (--int8-min-cosine) if that loss is acceptable."
    )


# -- w7a8-static ---------------------------------------------------------------------------------
def _w7a8_static(fp32: Path, out: Path, calibration: Calibration, exclude: re.Pattern[str] | None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32))
    excluded = [n.name for n in graph.graph.node if exclude is not None and exclude.search(n.name)]
    with _without_preprocess_hint():
        quantize_dynamic(
            str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul", "Attention", "EmbedLayerNormalization"],
            reduce_range=True,  # 7-bit weights: no int16 saturation in AVX2's u8s8 kernels
            nodes_to_exclude=excluded, extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    model = onnx.load(str(out))
    _make_activation_scales_static(model, calibration)
    model.ir_version = min(model.ir_version, IR_VERSION)
    onnx.save(model, str(out))


@contextlib.contextmanager
def _without_preprocess_hint() -> Iterator[None]:
    """onnxruntime's quantiser logs, on the root logger, a hint to run its pre-processing (shape
    inference and graph optimisation) first. The graph it gets here has been through
    onnxruntime's transformer optimiser already, so in the export's log the hint is only noise."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _make_activation_scales_static(model: onnx.ModelProto, calibration: Calibration) -> None:
    """Replace DynamicQuantizeLinear (scale over the whole padded batch) by QuantizeLinear with a
    constant scale and zero point calibrated on real tokens only."""
    dynamic = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    ranges = _activation_ranges(model, [n.input[0] for n in dynamic], calibration)
    for node in dynamic:
        lo, hi = ranges[node.input[0]]
        scale = max((hi - lo) / 255.0, 1e-8)
        zero = int(np.clip(round(-lo / scale), 0, 255))
        y, y_scale, y_zero = node.output
        model.graph.initializer.extend([
            numpy_helper.from_array(np.array(scale, np.float32), y_scale),
            numpy_helper.from_array(np.array(zero, np.uint8), y_zero),
        ])
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(at, helper.make_node(
            "QuantizeLinear", [node.input[0], y_scale, y_zero], [y], name=f"{node.name}_static"))


def _activation_ranges(model: onnx.ModelProto, names: list[str], calibration: Calibration
                       ) -> dict[str, tuple[float, float]]:
    lo = dict.fromkeys(names, 0.0)
    hi = dict.fromkeys(names, 0.0)
    for values in _probe(model, names, calibration):
        for name, value in values.items():
            lo[name] = min(lo[name], float(value.min()))
            hi[name] = max(hi[name], float(value.max()))
    return {n: (lo[n], hi[n]) for n in names}


def _channel_abs_max(model: onnx.ModelProto, names: list[str], calibration: Calibration
                     ) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |activation| over the real tokens of the calibration texts.

    The maxima are reduced inside the graph (Abs, padded positions zeroed, ReduceMax), so each run
    returns one vector per tensor instead of every activation of the batch: on a base-size model
    the full activations of a calibration batch take gigabytes.
    """
    ranks = _ranks(model, names, calibration.feeds[0])
    mask = "fusembed_probe_token_mask"
    nodes = [
        helper.make_node("Cast", ["attention_mask"], [f"{mask}_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [f"{mask}_float", f"{mask}_axes"], [mask]),
    ]
    outputs = []
    for i, name in enumerate(names):
        rank = ranks[name]
        source = f"fusembed_probe_{i}_abs"
        nodes.append(helper.make_node("Abs", [name], [source]))
        if rank == 3:  # (batch, tokens, channels): padded tokens never reach the output
            nodes.append(helper.make_node("Mul", [source, mask], [f"{source}_real"]))
            source = f"{source}_real"
        peak = f"fusembed_probe_{i}_peak"
        nodes.append(helper.make_node("ReduceMax", [source], [peak], axes=list(range(rank - 1)),
                                      keepdims=0))
        outputs.append(peak)
    session = _probe_session(model, nodes, outputs,
                             [numpy_helper.from_array(np.array([-1], np.int64), f"{mask}_axes")])
    out: dict[str, np.ndarray] = {}
    # onnxruntime keeps every probed activation until the end of the run, however the graph orders
    # the added nodes (48 of them took 1.9 GB more than a plain run on a batch of 16 x 384 tokens
    # of all-mpnet-base-v2), so the probe runs a few texts at a time.
    for feeds in _longest_first(calibration.feeds):  # the maxima do not depend on the order
        for start in range(0, len(feeds["input_ids"]), PROBE_ROWS):
            part = {k: v[start : start + PROBE_ROWS] for k, v in feeds.items()}
            for name, peak in zip(names, session.run(outputs, part), strict=True):
                out[name] = np.maximum(out[name], peak) if name in out else peak
    return out


def _ranks(model: onnx.ModelProto, names: list[str], feeds: Feeds) -> dict[str, int]:
    """The rank of each tensor in `names`, from one run on the first text's first 8 tokens."""
    small = {k: v[:1, :8] for k, v in feeds.items()}
    values = _probe_session(model, [], names).run(names, small)
    return {name: value.ndim for name, value in zip(names, values, strict=True)}


def _probe_session(model: onnx.ModelProto, nodes: list[onnx.NodeProto], outputs: list[str],
                   initializers: Sequence[onnx.TensorProto] = ()) -> ort.InferenceSession:
    """A session of `model` with `nodes` and `initializers` added and `outputs` as extra outputs.

    `model` is extended in place for as long as it takes to serialise it, then restored: a copy of
    a base-size model would hold another 400 MB while the session runs."""
    graph = model.graph
    counts = len(graph.node), len(graph.initializer), len(graph.output)
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs)
    try:
        serialized = model.SerializeToString()
    finally:
        del graph.node[counts[0]:]
        del graph.initializer[counts[1]:]
        del graph.output[counts[2]:]
    return _session(serialized)


def _longest_first(feeds: Sequence[Feeds]) -> list[Feeds]:
    """`feeds` with the most tokens first: a session's memory arena then grows once, to the
    largest batch, and the smaller ones fit in it."""
    return sorted(feeds, key=lambda f: -f["input_ids"].size)


def _probe(model: onnx.ModelProto, names: list[str], calibration: Calibration
           ) -> Iterator[dict[str, np.ndarray]]:
    """Run `model` on each calibration batch with `names` as extra outputs; yield their values,
    padded positions removed from (batch, tokens, features) tensors: those never reach the output."""
    session = _probe_session(model, [], names)
    for feeds in calibration.feeds:
        real = feeds["attention_mask"].reshape(-1) == 1
        values = {}
        for name, value in zip(names, session.run(names, feeds), strict=True):
            values[name] = value.reshape(-1, value.shape[-1])[real] if value.ndim == 3 else value
        yield values


# -- w8a8-rowwise-pairsum ------------------------------------------------------------------------
def _rowwise_pairsum(quant_base: Path, out: Path, calibration: Calibration, alpha: float = 0.5,
                     weights: WeightRange = "pairsum") -> None:
    model = onnx.load(str(quant_base))
    _quantize_embedding_tables(model)
    quantize_rowwise(model, lambda names: _channel_abs_max(model, names, calibration), alpha=alpha,
                     weight_range=weights)
    model.ir_version = min(model.ir_version, IR_VERSION)
    onnx.save(model, str(out))


# -- w8-blockwise-* --------------------------------------------------------------------------------
def _w8_blockwise(quant_base: Path, out: Path, block_size: int) -> None:
    # onnxruntime's MatMulNBits module calls logging.basicConfig(level=INFO) when imported, which
    # would print every skipped node and every other library's INFO lines from then on.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)

    model = onnx.load(str(quant_base))
    _quantize_embedding_tables(model)
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=block_size, is_symmetric=True,
                                     accuracy_level=4)
    quantizer.process()
    result = quantizer.model.model
    result.ir_version = min(result.ir_version, IR_VERSION)
    onnx.save(result, str(out))


@dataclass(frozen=True)
class Scheme:
    """An int8 candidate: how it is built from the graph fused for quantisation, whether it reads
    the calibration texts, and the token width multiple its graph must see."""

    name: str
    build: Callable[[Path, Path, Calibration], None]  # (quant_base, out, calibration)
    calibrated: bool
    token_multiple: int = 1


# The int8 schemes the export tries, in this order (`quantize_int8`). The lambdas look the builders
# up when called, so that a test can replace one.
SCHEMES = (
    Scheme("w8a8-rowwise-pairsum", lambda base, out, cal: _rowwise_pairsum(base, out, cal), True),
    Scheme("w8-blockwise-128", lambda base, out, _cal: _w8_blockwise(base, out, block_size=128), False,
           token_multiple=2),
    Scheme("w8-blockwise-32", lambda base, out, _cal: _w8_blockwise(base, out, block_size=32), False),
)


def _quantize_embedding_tables(model: onnx.ModelProto, min_rows: int = 256) -> int:
    """Store embedding tables (words, positions) as int8 with one scale per row, looked up with
    standard ops (Gather rows and scales, Cast, Mul), so only the rows a batch uses are dequantised.
    The two-row token-type table is not worth it."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    done = 0
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in inits:
            continue
        table = numpy_helper.to_array(inits[node.input[0]])
        if table.ndim != 2 or table.shape[0] < min_rows or table.dtype != np.float32:
            continue
        scale = (np.maximum(np.abs(table).max(axis=1), 1e-12) / 127.0).astype(np.float32)
        q = np.clip(np.round(table / scale[:, None]), -127, 127).astype(np.int8)
        base, ids, out = node.input[0], node.input[1], node.output[0]
        graph.initializer.remove(inits[base])
        graph.initializer.extend([
            numpy_helper.from_array(q, f"{base}_int8"),
            numpy_helper.from_array(scale, f"{base}_row_scale"),
            numpy_helper.from_array(np.array([-1], np.int64), f"{base}_unsqueeze_axes"),
        ])
        new = [
            helper.make_node("Gather", [f"{base}_int8", ids], [f"{out}_int8"], axis=0),
            helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], to=TensorProto.FLOAT),
            helper.make_node("Gather", [f"{base}_row_scale", ids], [f"{out}_scale"], axis=0),
            helper.make_node("Unsqueeze", [f"{out}_scale", f"{base}_unsqueeze_axes"], [f"{out}_scale2"]),
            helper.make_node("Mul", [f"{out}_float", f"{out}_scale2"], [out]),
        ]
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, n in enumerate(new):
            graph.node.insert(at + offset, n)
        done += 1
    return done
