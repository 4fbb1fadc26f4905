"""The `fusembed` command: export, encode, search, bench, serve, embed-corpus, info, doctor.

Exit codes: 0 success, 1 the work failed (bad bundle, unreadable input, failed export),
2 the command line was wrong, 130 interrupted. Errors go to stderr, without tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from . import __version__
from ._auto import choose_auto
from ._cpu import cpu_info
from ._encoder import Encoder
from ._errors import CommandError, FusembedError, InputError
from ._manifest import read_manifest
from ._similarity import cos_sim, dot_score, semantic_search

STDIO = "-"  # as a file name: standard input or output


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("fusembed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + 13  # SIGPIPE
    except (FusembedError, ImportError, OSError) as exc:
        print(f"fusembed {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusembed",
        description="Sentence embeddings from fused ONNX graphs, with no torch at run time.",
    )
    parser.add_argument("--version", action="version", version=f"fusembed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "export", help="export a sentence-transformers model to a bundle (needs the export extra)"
    )
    p.add_argument("model", metavar="MODEL", help="local folder, hub id (org/name) or 'all-MiniLM-L6-v2'")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="bundle directory to create")
    p.add_argument("--revision", help="hub revision (branch, tag or commit)")
    p.add_argument("--cache-dir", type=Path, help="Hugging Face cache directory (default: HF_HUB_CACHE)")
    p.add_argument("--similarity", choices=("cosine", "dot"),
                   help="score function to record when the model's files do not name one")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="skip onnxruntime's transformer fusions")
    p.add_argument("--min-cosine", type=float, default=0.99999,
                   help="fp32 parity gate against sentence-transformers (default: %(default)s)")
    p.add_argument("--variants", type=_variant_list, default=("fp32", "int8", "fp16"),
                   help="variants the bundle keeps, comma-separated (default: fp32,int8,fp16); "
                   "e.g. 'int8' for a small CPU-only bundle")
    p.add_argument("--int8-min-mean-cosine", type=float, default=0.997,
                   help="int8 budget: mean cosine to the fp32 torch reference (default: %(default)s)")
    p.add_argument("--int8-min-cosine", type=float, default=0.99,
                   help="int8 budget: min cosine to the fp32 torch reference (default: %(default)s)")
    p.add_argument("--int8-min-top10", type=float, default=0.9,
                   help="int8 budget: top-10 search agreement with the reference (default: %(default)s)")
    p.add_argument("--quality-texts", type=_positive_int, default=1000,
                   help="held-out texts the int8/fp16 budgets are measured on (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is a bundle")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    p.set_defaults(run=_export)

    def encoder_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory")
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        p.add_argument("--precision", choices=("auto", "fp32", "int8", "fp16"), default="auto")
        p.add_argument("--batch-size", type=_positive_int, default=32)

    def text_input(p: argparse.ArgumentParser, flag: str, what: str) -> None:
        p.add_argument(flag, dest="input", type=Path, required=True,
                       help=f"{what}: one text per line, or JSONL (*.jsonl) with --field; "
                       "- reads standard input, one text per line")
        p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")

    p = sub.add_parser("encode", help="embed texts from a file into a .npy matrix or JSON lines")
    encoder_options(p)
    text_input(p, "--input", "texts to embed")
    p.add_argument("--output", type=Path, required=True,
                   help="*.npy: an (n, dim) float32 matrix; *.jsonl: one {\"index\", \"embedding\"} "
                   "object per text; -: the same JSON lines on standard output")
    p.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    p.set_defaults(run=_encode)

    p = sub.add_parser("search", help="rank documents from a file against a query")
    encoder_options(p)
    p.add_argument("--query", required=True, help="the query text")
    text_input(p, "--docs", "documents")
    p.add_argument("--top-k", type=_positive_int, default=10, help="results to print (default: 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of 'score document' lines")
    p.set_defaults(run=_search)

    p = sub.add_parser("bench", help="measure latency, throughput, cold start and memory of a bundle")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("auto", "fp32", "int8", "fp16"), default="auto")
    p.add_argument("--texts", dest="input", type=Path,
                   help="texts to use (one per line, or JSONL with --field); default: built-in sentences")
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--batch-sizes", type=_size_list, default=(1, 8, 32, 128),
                   help="comma-separated batch sizes for the throughput table (default: 1,8,32,128)")
    p.add_argument("--repeats", type=_positive_int, default=200, help="batch-1 calls timed (default: 200)")
    p.add_argument("--threads", type=_positive_int, help="intra-op threads (default: the CPUs available)")
    p.add_argument("--output-dir", type=Path, default=Path("bench"),
                   help="where bench.json, bench.md and bench.png go (default: ./bench)")
    p.set_defaults(run=_bench)

    p = sub.add_parser("serve", help="serve a bundle over HTTP, OpenAI-compatible (needs the serve extra)",
                       description="POST /v1/embeddings (OpenAI's API), GET /v1/models, /health, "
                       "/metrics. Concurrent requests are batched. SIGTERM lets in-flight requests finish "
                       "(up to --graceful-timeout; past it, and for new requests, the answer is 503).")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=8080, help="TCP port (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("auto", "fp32", "int8", "fp16"), default="auto")
    p.add_argument("--threads", type=_positive_int, help="intra-op threads (default: the CPUs available)")
    p.add_argument("--model-name", help="the 'model' clients send (default: the bundle's model name)")
    p.add_argument("--api-key", default=os.environ.get("FUSEMBED_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health "
                   "(default: $FUSEMBED_API_KEY, else no key)")
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="run each request as its own model call (for comparison)")
    p.add_argument("--max-batch-tokens", type=_positive_int, default=8192,
                   help="a batch closes at this many tokens (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=_non_negative_float, default=2.0,
                   help="how long a request waits for others to join its batch (default: %(default)s)")
    p.add_argument("--max-queued", type=_positive_int, default=1024,
                   help="requests waiting for the model; past it a request gets 503 (default: %(default)s)")
    p.add_argument("--max-inputs", type=_positive_int, default=2048,
                   help="inputs per request (default: %(default)s)")
    p.add_argument("--max-input-chars", type=_positive_int, default=65536,
                   help="characters per input (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=16 * 2**20,
                   help="request body size; larger gets 413 (default: %(default)s)")
    p.add_argument("--graceful-timeout", type=_non_negative_int, default=30, metavar="SECONDS",
                   help="after SIGTERM, how long requests in flight may take to finish; those still "
                   "running then get 503 (default: %(default)s)")
    p.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    p.set_defaults(run=_serve)

    p = sub.add_parser("embed-corpus",
                       help="embed a corpus file into Parquet shards, streaming and resumable",
                       description="Embed every row of INPUT (text: one document per line; JSONL; Parquet) "
                       "into OUTPUT_DIR/part-NNNNN.parquet shards (id, embedding) plus _manifest.json and "
                       "_bad_rows.jsonl. Rerunning after an interruption resumes: finished shards are kept.")
    p.add_argument("input", metavar="INPUT", type=Path,
                   help="*.txt (one per line), *.jsonl/*.ndjson or *.parquet")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path, help="directory for the shards")
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("auto", "fp32", "int8", "fp16"), default="auto")
    p.add_argument("--threads", type=_positive_int, help="intra-op threads (default: the CPUs available)")
    p.add_argument("--format", choices=("text", "jsonl", "parquet"),
                   help="input format (default: from the suffix; anything else is text)")
    p.add_argument("--text-field", default="text",
                   help="JSONL field or Parquet column of the text (default: text)")
    p.add_argument("--id-field", help="JSONL field or Parquet column of the id (default: the row number)")
    p.add_argument("--on-bad-row", choices=("fail", "skip"), default="fail",
                   help="a row with no usable text (empty, not UTF-8, missing field): stop, or leave it out "
                   "and list it in _bad_rows.jsonl (default: fail)")
    p.add_argument("--shard-rows", type=_positive_int, default=50_000,
                   help="input rows per shard, the unit of resuming (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in OUTPUT_DIR")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--ray", action="store_true", help="run on Ray Data (needs the ray extra)")
    p.add_argument("--ray-address",
                   help="Ray cluster to join, e.g. ray://head:10001 (default: start a local one)")
    p.add_argument("--ray-workers", type=_positive_int, default=2,
                   help="with --ray: embedding actors, one bundle each (default: %(default)s)")
    p.add_argument("--ray-cpus-per-worker", type=float, default=1.0,
                   help="with --ray: CPUs per actor, also its onnxruntime threads (default: %(default)s)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0.0,
                   help="with --ray: GPUs per actor; > 0 runs the actors with device=cuda (default: 0)")
    p.set_defaults(run=_embed_corpus)

    p = sub.add_parser("info", help="show what a bundle's manifest says")
    p.add_argument("bundle", metavar="BUNDLE", type=Path)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(run=_info)

    p = sub.add_parser(
        "doctor", help="check a bundle on this machine: every variant's cosine and speed, and auto's choice",
        description="Run the bundle's check texts (stored with their sentence-transformers fp32 embeddings "
        "at export) through every variant on this machine, in paired rounds, and print per variant the "
        "cosine to that reference, sentences/s and batch-1 latency, with the CPU, its int8 class, the "
        "providers and threads, and which variant precision=auto uses here and why. Exits 1 when a "
        "variant does not run or gives other vectors here than at export.")
    p.add_argument("bundle", metavar="BUNDLE", type=Path)
    p.add_argument("--threads", type=_positive_int, help="intra-op threads (default: the CPUs available)")
    p.add_argument("--rounds", type=_positive_int, default=5,
                   help="timing rounds, every variant once per round (default: %(default)s)")
    p.add_argument("--record", action="store_true",
                   help="store the measurements in the bundle's manifest, so that precision=auto decides "
                   "by them on every CPU of this class")
    p.set_defaults(run=_doctor)
    return parser


def _in_range(text: str, convert: Callable[[str], float], low: float, high: float, what: str) -> float:
    """`text` as a number in [low, high], or the argparse error that says what was expected."""
    try:
        value = convert(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # nan fails too
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return int(_in_range(text, int, 1, math.inf, "a positive integer"))


def _port(text: str) -> int:
    return int(_in_range(text, int, 0, 65535, "a TCP port 0-65535"))


def _non_negative_int(text: str) -> int:
    return int(_in_range(text, int, 0, math.inf, "a whole number >= 0"))


def _non_negative_float(text: str) -> float:
    return _in_range(text, float, 0, math.inf, "a number >= 0")


def _size_list(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return sizes


def _variant_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in ("fp32", "int8", "fp16")]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of fp32,int8,fp16, got {text!r}")
    return names


def read_texts(path: Path, field: str) -> list[str]:
    """Texts from a file: JSONL (by suffix .jsonl/.ndjson) with `field`, else one per line.
    `-` is standard input, one text per line."""
    if str(path) == STDIO:
        raw = sys.stdin.buffer.read()
        path = Path("standard input")  # for the messages below; no suffix, so one text per line
    else:
        raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CommandError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start})") from None
    lines = text.splitlines()
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return lines
    texts: list[str] = []
    for number, row in enumerate(lines, 1):
        if not row.strip():
            raise CommandError(f"{path}: line {number} is empty; JSONL needs one object per line")
        try:
            record = json.loads(row)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or field not in record:
            raise CommandError(f"{path}: line {number} has no field {field!r} (use --field)")
        if not isinstance(record[field], str):
            raise CommandError(
                f"{path}: line {number}: field {field!r} is {type(record[field]).__name__}, expected a string"
            )
        texts.append(record[field])
    return texts


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory, expected a text file") from None
    except PermissionError:
        raise CommandError(f"{path}: permission denied") from None


def _encoder(args: argparse.Namespace) -> Encoder:
    return Encoder(args.bundle, device=args.device, precision=args.precision)


def _export(args: argparse.Namespace) -> int:
    try:
        from fusembed.export import ExportOptions, export_model
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise ImportError(
            f"export needs the export extra ({missing} is not installed): pip install 'fusembed[export]'"
        ) from None
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    report = export_model(args.model, args.out_dir, log=log, options=ExportOptions(
        revision=args.revision, cache_dir=args.cache_dir, similarity=args.similarity,
        optimize=args.optimize, min_cosine=args.min_cosine, overwrite=args.overwrite,
        variants=args.variants, int8_min_mean_cosine=args.int8_min_mean_cosine,
        int8_min_cosine=args.int8_min_cosine, int8_min_top10=args.int8_min_top10,
        quality_texts=args.quality_texts,
    ))
    m = report.manifest
    measured = ", ".join(
        f"{name} min cosine {(v.quality.min_cosine if v.quality else v.parity.min_cosine):.5f}"
        for name, v in m.variants.items())
    print(f"wrote {report.bundle} ({m.dim}-dim, {m.similarity}; {measured} vs sentence-transformers)")
    for name, why in report.rejected.items():
        print(f"fusembed export: warning: {name} variant not written: {why}", file=sys.stderr)
    return 0


def _encode(args: argparse.Namespace) -> int:
    to_stdout = str(args.output) == STDIO
    if not to_stdout:
        if args.output.suffix not in (".npy", ".jsonl"):
            raise CommandError(
                f"--output {args.output}: must end in .npy or .jsonl, or be - (standard output)")
        if not args.output.parent.is_dir():
            raise CommandError(f"--output {args.output}: directory {args.output.parent} does not exist")
    texts = read_texts(args.input, args.field)
    embeddings = _encoder(args).encode(texts, batch_size=args.batch_size,
                                       show_progress_bar=args.progress)
    if to_stdout:
        _write_json_lines(sys.stdout, embeddings)
        sys.stdout.flush()
        return 0
    partial = args.output.with_name(f".{args.output.name}.partial")
    if args.output.suffix == ".npy":
        with partial.open("wb") as fh:  # write then rename: no half-written output on failure
            np.save(fh, embeddings)
    else:
        with partial.open("w", encoding="utf-8") as text:
            _write_json_lines(text, embeddings)
    os.replace(partial, args.output)
    print(f"wrote {args.output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32", file=sys.stderr)
    return 0


def _write_json_lines(out: TextIO, embeddings: np.ndarray) -> None:
    """One {"index", "embedding"} object per row: the shape of an OpenAI embeddings data item."""
    for index, row in enumerate(embeddings.tolist()):
        out.write(json.dumps({"index": index, "embedding": row}) + "\n")


def _search(args: argparse.Namespace) -> int:
    docs = read_texts(args.input, args.field)
    if not docs:
        raise InputError(f"{args.input}: no documents to search")
    encoder = _encoder(args)
    query_emb = encoder.encode(args.query)
    doc_emb = encoder.encode(docs, batch_size=args.batch_size)
    score = dot_score if encoder.similarity == "dot" else cos_sim
    hits = semantic_search(query_emb, doc_emb, top_k=args.top_k, score_function=score)[0]
    if args.json:
        print(json.dumps([{"score": h["score"], "corpus_id": h["corpus_id"], "document": docs[h["corpus_id"]]}
                          for h in hits], ensure_ascii=False))
        return 0
    print("Query:", args.query)
    for hit in hits:
        print(f"{hit['score']:.4f}", docs[hit["corpus_id"]])
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ._bench import builtin_texts, markdown, run_bench, write_outputs

    texts = read_texts(args.input, args.field) if args.input else builtin_texts()
    if not texts:
        raise InputError(f"{args.input}: no texts to benchmark with")
    result = run_bench(args.bundle, texts=texts, batch_sizes=args.batch_sizes, repeats=args.repeats,
                       device=args.device, precision=args.precision, threads=args.threads)
    written = write_outputs(result, args.output_dir)
    print(markdown(result), end="")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if not any(p.suffix == ".png" for p in written):
        print("fusembed bench: no plot: matplotlib is not installed (pip install 'fusembed[bench]')",
              file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .server import Limits, ServerOptions, model_names, run  # ImportError names the extra

    encoder = Encoder(args.bundle, device=args.device, precision=args.precision, threads=args.threads)
    options = ServerOptions(
        model_name=args.model_name, api_key=args.api_key or None, batching=args.batching,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queued=args.max_queued,
        limits=Limits(max_inputs=args.max_inputs, max_input_chars=args.max_input_chars,
                      max_body_bytes=args.max_body_bytes),
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not options.api_key:
        print(f"fusembed serve: warning: listening on {args.host} with no --api-key; "
              "anyone who can reach this port can use it", file=sys.stderr)
    batching = (f"batching up to {args.max_batch_tokens} tokens or {args.max_wait_ms:g} ms"
                if args.batching else "batching off")
    print(f"fusembed serve: model {model_names(encoder, options)[0]!r} ({encoder.precision}, "
          f"{encoder.device}, {batching}) on http://{args.host}:{args.port}/v1/embeddings",
          file=sys.stderr, flush=True)
    run(encoder, options, host=args.host, port=args.port, graceful_timeout_s=args.graceful_timeout,
        access_log=args.access_log)
    return 0


def _embed_corpus(args: argparse.Namespace) -> int:
    if args.ray:
        from .ray import embed_corpus_with_ray  # ImportError names the extra

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # Ray's progress bars stay

        report = embed_corpus_with_ray(
            args.input, args.output_dir, args.bundle, input_format=args.format, text_field=args.text_field,
            id_field=args.id_field, on_bad_row=args.on_bad_row, batch_size=args.batch_size,
            overwrite=args.overwrite, address=args.ray_address, workers=args.ray_workers,
            cpus_per_worker=args.ray_cpus_per_worker, gpus_per_worker=args.ray_gpus_per_worker,
            precision=args.precision,
        )
    else:
        from .corpus import CorpusOptions, Source, embed_corpus  # ImportError names the extra

        source = Source.open(args.input, format=args.format, text_field=args.text_field,
                             id_field=args.id_field)
        encoder = Encoder(args.bundle, device=args.device, precision=args.precision, threads=args.threads)
        report = embed_corpus(source, args.output_dir, encoder, CorpusOptions(
            shard_rows=args.shard_rows, on_bad_row=args.on_bad_row, batch_size=args.batch_size,
            progress=args.progress, overwrite=args.overwrite))
    resumed = f", {report.shards_resumed} kept from an earlier run" if report.shards_resumed else ""
    print(f"wrote {report.output_dir}: {report.rows_written} of {report.rows_in} rows in {report.shards} "
          f"shards{resumed}, {report.bad_rows} bad rows (_bad_rows.jsonl), {report.seconds:.1f} s",
          file=sys.stderr)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from ._doctor import doctor

    report = doctor(args.bundle, threads=args.threads, rounds=args.rounds, record=args.record)
    print(report.text())
    return 0 if report.ok else 1


def _info(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.bundle)
    if args.json:
        print(manifest.to_json(), end="")
        return 0
    src = manifest.source
    print(f"bundle      {args.bundle}")
    print(f"model       {src.model} ({src.kind}, revision {src.revision})")
    print(f"dim         {manifest.dim}")
    print(f"pooling     {manifest.pooling}")
    print(f"normalized  {manifest.normalized}")
    print(f"similarity  {manifest.similarity}")
    print(f"max tokens  {manifest.max_seq_length}")
    print(f"inputs      {', '.join(manifest.inputs)} -> {manifest.output}")
    print("variants (cosine to sentence-transformers, torch fp32):")
    for name, v in manifest.variants.items():
        size = (args.bundle / v.file).stat().st_size / 1e6
        p, q = v.parity, v.quality
        print(f"  {name:5} {v.file:17} {size:6.1f} MB  {v.scheme}")
        print(f"        parity on {p.texts} edge-case texts: min cosine {p.min_cosine:.7f}, "
              f"max abs diff {p.max_abs_diff:.1e}")
        if q is not None:
            print(f"        quality on {q.texts} texts: mean cosine {q.mean_cosine:.5f}, min "
                  f"{q.min_cosine:.5f}, top-10 agreement {q.top10_agreement:.3f}, "
                  f"batch invariance {q.batch_invariance:.6f}")
        if v.fusions:
            print(f"        fused: {', '.join(f'{k} {n}' for k, n in v.fusions.items())}")
        if v.selection.get("reason"):
            print(f"        chosen: {v.selection['reason']}")
        for m in v.measurements:
            print(f"        measured on {m.cpu} ({m.isa}, {m.threads} threads) by {m.by}: "
                  f"{m.sentences_per_s:.0f} sentences/s, batch-1 {m.batch1_ms:.2f} ms, "
                  f"min cosine {m.min_cosine:.5f}")
    cpu = cpu_info()
    print(f"this cpu    {cpu.describe()}")
    try:
        choice = choose_auto(manifest, "cpu", cpu)
        print(f"auto (cpu)  {choice.name}: {choice.reason}")
    except LookupError:
        print("auto (cpu)  no variant of this bundle runs on the CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
