"""`fusembed doctor`: a bundle proves itself on the machine it runs on.

The export stores a small set of check texts with their fp32 sentence-transformers embeddings
(`check.json`). `doctor` runs them through every variant this machine can run, in paired rounds
(every variant once per round, order rotating, so drift in the machine's speed hits all alike),
and reports per variant the cosine to that reference, sentences/s and batch-1 latency, with the
CPU, its int8 class, the providers, the thread count, and which variant `precision="auto"` uses
here and why. `record=True` stores the measurements in the manifest, so that `auto` decides by
them on every machine of this CPU class.

The export uses `measure_variants` too: a bundle leaves the export measured on the CPU that
exported it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ._auto import QUALITY_SLACK, Choice, choose_auto
from ._bench import batch1_ms, pass_seconds
from ._cpu import CpuInfo, cpu_info
from ._encoder import Encoder
from ._errors import BundleError, FusembedError
from ._manifest import MANIFEST_NAME, Manifest, Measurement, check_files, read_manifest
from ._similarity import row_cosine

CHECK_BATCH = 32


@dataclass(frozen=True)
class CheckSet:
    """The bundle's check texts and sentence-transformers' fp32 embeddings of them."""

    texts: tuple[str, ...]
    embeddings: np.ndarray
    reference: str  # what made the embeddings, e.g. "sentence-transformers 5.1.0 (torch 2.13.0, fp32)"

    def to_json(self) -> str:
        return json.dumps({"texts": list(self.texts), "reference": self.reference,
                           "embeddings": self.embeddings.astype(np.float32).tolist()}) + "\n"

    @classmethod
    def read(cls, path: Path) -> CheckSet:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            texts = tuple(data["texts"])
            emb = np.asarray(data["embeddings"], dtype=np.float32)
            reference = str(data["reference"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{path}: not a readable check set ({exc}); the bundle is damaged") from None
        if emb.ndim != 2 or emb.shape[0] != len(texts) or not all(isinstance(t, str) for t in texts):
            raise BundleError(f"{path}: texts and embeddings do not match; the bundle is damaged")
        return cls(texts, emb, reference)


@dataclass(frozen=True)
class VariantCheck:
    """One variant run on this machine: quality against the reference, and speed."""

    name: str
    scheme: str
    measurement: Measurement | None
    error: str = ""  # why it could not run here (then `measurement` is None)


@dataclass(frozen=True)
class DoctorReport:
    bundle: Path
    cpu: CpuInfo
    threads: int
    onnxruntime: str
    providers: tuple[str, ...]
    texts: int
    reference: str
    checks: tuple[VariantCheck, ...]
    auto: Choice
    recorded: bool
    problems: tuple[str, ...]  # a variant that did not run, or gives other vectors than at export

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [
            f"bundle     {self.bundle}",
            f"cpu        {self.cpu.describe()}",
            f"runtime    onnxruntime {self.onnxruntime}, providers {', '.join(self.providers)}, "
            f"{self.threads} threads",
            f"check set  {self.texts} texts, reference {self.reference}",
            "",
            f"{'variant':8} {'scheme':24} {'mean cos':>9} {'min cos':>9} {'sent/s':>8} {'batch-1 ms':>10}",
        ]
        for c in self.checks:
            m = c.measurement
            scheme = c.scheme if len(c.scheme) <= 24 else c.scheme[:23] + "…"
            if m is None:
                lines.append(f"{c.name:8} {scheme:24} not run: {c.error}")
            else:
                lines.append(f"{c.name:8} {scheme:24} {m.mean_cosine:9.5f} {m.min_cosine:9.5f} "
                             f"{m.sentences_per_s:8.0f} {m.batch1_ms:10.2f}")
        lines += ["", f"auto       {self.auto.name}: {self.auto.reason}"]
        lines += [f"PROBLEM    {p}" for p in self.problems]
        lines.append("verdict    " + ("ok" if self.ok else "NOT OK: see the problems above"))
        if self.recorded:
            lines.append(f"recorded   these measurements in {self.bundle / MANIFEST_NAME}")
        return "\n".join(lines)


def doctor(bundle: str | Path, *, threads: int | None = None, rounds: int = 5,
           record: bool = False) -> DoctorReport:
    """Run the bundle's check texts through every variant here; see the module docstring.

    Example:
        >>> report = fusembed.doctor("bundles/all-MiniLM-L6-v2")   # doctest: +SKIP
        >>> report.ok, report.auto.name                             # doctest: +SKIP
        (True, 'int8')
        >>> print(report.text())                                    # doctest: +SKIP

    Raises:
        BundleError: the manifest or the check set is damaged, or the bundle has no check set. A
            damaged variant file is not raised: that variant's check carries the error.
    """
    path = Path(bundle)
    # The check set is the reference: it must be whole. A damaged variant file is that variant's
    # error in the report (its Encoder checks its file's sha256); the others still run.
    manifest = read_manifest(path, files=())
    if not manifest.check:
        raise BundleError(f"{path}: this bundle has no check set (exported without one, or by an "
                          "older fusembed); re-export it to use doctor")
    check_files(path, manifest, [manifest.check])
    check = CheckSet.read(path / manifest.check)
    encoders: dict[str, Encoder] = {}
    checks: dict[str, VariantCheck] = {}
    for name, variant in manifest.variants.items():
        try:
            encoders[name] = Encoder(path, precision=name, threads=threads)  # type: ignore[arg-type]
        except FusembedError as exc:
            checks[name] = VariantCheck(name, variant.scheme, None, str(exc))
    measured = measure_variants(encoders, check.texts, check.embeddings, rounds=rounds, by="doctor")
    for name, m in measured.items():
        checks[name] = VariantCheck(name, manifest.variants[name].scheme, m)
    if record:
        manifest = record_measurements(path, manifest, measured)
    cpu = cpu_info()
    problems = [f"{c.name} does not run here: {c.error}" for c in checks.values() if c.measurement is None]
    for name, m in measured.items():
        exported = manifest.variants[name].quality or manifest.variants[name].parity
        if m.min_cosine < exported.min_cosine - QUALITY_SLACK:
            problems.append(f"{name} gives min cosine {m.min_cosine:.5f} here against "
                            f"{exported.min_cosine:.5f} at export: its kernels compute other values on "
                            f"this CPU ({cpu.isa}); use another variant")
    first = next(iter(encoders.values()), None)
    return DoctorReport(
        bundle=path, cpu=cpu,
        threads=first._session.get_session_options().intra_op_num_threads if first else 0,
        onnxruntime=ort.__version__, providers=tuple(ort.get_available_providers()),
        texts=len(check.texts), reference=check.reference,
        checks=tuple(checks[n] for n in manifest.variants), auto=choose_auto(manifest, "cpu", cpu),
        recorded=record, problems=tuple(problems),
    )


def measure_variants(encoders: Mapping[str, Encoder], texts: Sequence[str], reference: np.ndarray, *,
                     rounds: int, by: str, batch1_repeats: int = 20) -> dict[str, Measurement]:
    """Quality and speed of each encoder on `texts`, timed in paired rounds; medians over rounds."""
    texts = list(texts)
    cpu = cpu_info()
    throughput: dict[str, list[float]] = {n: [] for n in encoders}
    batch1: dict[str, list[float]] = {n: [] for n in encoders}
    quality: dict[str, tuple[float, float]] = {}
    for name, enc in encoders.items():  # warm-up at the shapes timed below, and quality
        got = enc.encode(texts, batch_size=CHECK_BATCH)
        cos = row_cosine(got, reference)
        quality[name] = (float(cos.mean()), float(cos.min()))
        enc.encode(texts[0])
    names = list(encoders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            enc = encoders[name]
            throughput[name].append(len(texts) / pass_seconds(enc, texts, CHECK_BATCH))
            batch1[name] += batch1_ms(enc, texts, batch1_repeats // rounds or 1, start=r)
    from . import __version__

    stamp = f"{by} (fusembed {__version__}, onnxruntime {ort.__version__})"
    return {
        name: Measurement(
            isa=cpu.isa, cpu=cpu.model, threads=enc._session.get_session_options().intra_op_num_threads,
            sentences_per_s=round(statistics.median(throughput[name]), 1),
            batch1_ms=round(statistics.median(batch1[name]), 3),
            mean_cosine=round(quality[name][0], 6), min_cosine=round(quality[name][1], 6), by=stamp,
        )
        for name, enc in encoders.items()
    }


def record_measurements(bundle: Path, manifest: Manifest, measured: Mapping[str, Measurement]) -> Manifest:
    """Add `measured` to the manifest's variants (replacing earlier ones of the same CPU class,
    thread count and source) and rewrite `manifest.json`; the ONNX files are not touched."""
    variants = dict(manifest.variants)
    for name, m in measured.items():
        v = variants[name]
        kept = tuple(o for o in v.measurements
                     if (o.isa, o.threads, o.by.split()[0]) != (m.isa, m.threads, m.by.split()[0]))
        variants[name] = replace(v, measurements=(*kept, m))
    updated = replace(manifest, variants=variants)
    target = bundle / MANIFEST_NAME
    tmp = target.with_suffix(".json.tmp")
    try:
        tmp.write_text(updated.to_json(), encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink()
        raise BundleError(
            f"{target}: cannot record the measurements ({exc}); is the bundle read-only?") from None
    return updated
