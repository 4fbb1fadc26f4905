"""Measure one embedding engine in a process of its own and print one JSON object on stdout.

`benchmarks/compare.py` runs this once per engine and model, each in a fresh process, so every
engine gets the same cold start and its own peak RSS. The engines (`--engine`) and how each is
loaded are in `engine_adapters.py`; the model's own figures and the local ONNX export in
`model_folder.py`; the timing loops in `harness.py`.

The ONNX engines need a local export (no hub): `--prepare` makes it once under --onnx-dir (a copy
of MODEL_DIR with onnx/model.onnx, onnx/model_qint8_avx512_vnni.onnx and a fastembed/ folder) and
later runs reuse it. An st-onnx run that finds no export runs `--prepare` in a child process first
and leaves its time out of the figures; fastembed cannot (its venv has no torch), so prepare first:

    export HF_HUB_OFFLINE=1
    .venv/bin/python benchmarks/engines.py --prepare --model MODEL_DIR --onnx-dir DIR
    .venv/bin/python benchmarks/engines.py --engine st-torch --model MODEL_DIR --texts TEXTS \\
        --threads 2 --batch-size 32 --repeats 200 [--t0 EPOCH_S] [--save-vectors FILE.npy]
    .venv/bin/python benchmarks/engines.py --engine fusembed-int8 --model MODEL_DIR \\
        --bundle BUNDLE --texts TEXTS ...
    bash benchmarks/fastembed_venv.sh   # once: fastembed cannot share .venv
    .venv-fastembed/bin/python benchmarks/engines.py --engine fastembed --model MODEL_DIR \\
        --onnx-dir DIR --texts TEXTS ...

TEXTS has one text per line. Measured, the same way for every engine: import and load time, time
from process start (or from --t0, `time.time()` taken by the driver before it spawns this process)
to the first embedding, batch-1 latency percentiles (10 warm-up calls, then --repeats calls cycling
through the texts), throughput over all texts at --batch-size (one warm-up pass, best of 3), peak
RSS. Only the standard library is imported at module level, so any engine's venv can run this.

With --paired the process prints its JSON object (throughput from the warm-up pass alone), then keeps
the model loaded and reads commands on stdin: `pass` runs one pass over all texts at --batch-size
and prints `{"pass_s": seconds}`; `latency N` times N batch-1 calls and prints `{"latency_ms":
[...]}`; `quit` (or end of input) exits. compare.py uses it to time every
engine in turn, round after round, so a slower or faster spell of a shared host hits all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from engine_adapters import ENGINES, Engine, EngineError, load
from harness import (
    batch1_ms,
    best_pass_seconds,
    go_offline,
    package_versions,
    pass_seconds,
    peak_rss_mb,
    percentiles,
    process_age_s,
)
from model_folder import ModelFolderError, count_tokens, max_seq_length, prepare

VECTORS_KEPT = 64
WARMUP_CALLS = 10


def read_texts(path: Path) -> list[str]:
    try:
        texts = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:  # reported as this engine's JSON error, not a traceback
        raise EngineError(f"--texts {path}: cannot read it ({exc})") from None
    if not texts:
        raise EngineError(f"{path} has no lines")
    return texts


def run(args: argparse.Namespace, engine: Engine, texts: list[str]) -> dict[str, Any]:
    """Everything but the load: the first embedding, batch-1 latency, throughput, memory."""
    vectors = engine.encode(texts[:1], 1)
    if args.t0 is not None:
        first_s, first_from = time.time() - args.t0, "--t0 (driver's time.time() before spawning)"
    else:
        first_s, first_from = process_age_s(), "process start (/proc, 10 ms resolution)"
    first_s -= engine.excluded_s
    rss_after_first = peak_rss_mb()

    times = batch1_ms(lambda text: engine.encode([text], 1), texts, args.repeats, warmup=WARMUP_CALLS)
    p50, p95, p99 = percentiles(times)

    def one_pass() -> object:
        return engine.encode(texts, args.batch_size)

    # paired: the driver asks for the timed passes; this is the warm-up pass
    best = pass_seconds(one_pass) if args.paired else best_pass_seconds(one_pass)
    peak = peak_rss_mb()  # before the bookkeeping below loads anything more

    if args.save_vectors is not None:
        import numpy as np

        np.save(args.save_vectors, np.asarray(engine.encode(texts[:VECTORS_KEPT], args.batch_size),
                                              dtype=np.float32))
    return {
        "engine": args.engine, "model": str(args.model), "threads": args.threads,
        "batch_size": args.batch_size, "texts": len(texts), "tokens": count_tokens(args.model, texts),
        "dim": int(vectors.shape[-1]), "max_seq_length": max_seq_length(args.model),
        "import_s": round(engine.import_s, 4), "load_s": round(engine.load_s, 4),
        "first_embedding_s": round(first_s, 4), "first_embedding_from": first_from,
        "p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3), "repeats": args.repeats,
        "throughput": round(len(texts) / best, 2),
        "rss_after_first_mb": round(rss_after_first, 1), "peak_rss_mb": round(peak, 1),
        "versions": {"python": platform.python_version(), **package_versions(engine.packages)},
        "notes": [*engine.notes,
                  "tokens: non-padding tokens incl. [CLS]/[SEP], model tokenizer.json truncated at "
                  "max_seq_length; rss_after_first_mb and peak_rss_mb are VmHWM (peak so far)",
                  f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']} (tokenizer threads)"],
        "saved_vectors": str(args.save_vectors) if args.save_vectors else None,
        **({"precision": engine.precision} if engine.precision else {}),
        **({"throughput_from": "the warm-up pass only (--paired: see pass_s)"} if args.paired else {}),
    }


def serve_paired(engine: Engine, texts: list[str], batch_size: int, out: TextIO) -> None:
    """Answer the driver's `pass` and `latency N` commands on stdin until `quit` or end of input."""
    calls = 0
    for command in sys.stdin:
        if command.strip() == "pass":
            answer: dict[str, Any] = {"pass_s": pass_seconds(lambda: engine.encode(texts, batch_size))}
        elif command.startswith("latency "):  # `latency N`: N more batch-1 calls, texts cycling on
            n = int(command.split()[1])
            answer = {"latency_ms": batch1_ms(lambda text: engine.encode([text], 1), texts, n, start=calls)}
            calls += n
        else:
            break
        out.write(json.dumps(answer) + "\n")
        out.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--engine", choices=ENGINES)
    parser.add_argument("--model", type=Path, required=True, help="local sentence-transformers folder")
    parser.add_argument("--bundle", type=Path, help="fusembed bundle (fusembed-* engines)")
    parser.add_argument("--texts", type=Path, help="one text per line")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200, help="batch-1 calls after 10 warm-up calls")
    parser.add_argument("--onnx-dir", type=Path, help="writable folder for the local ONNX export")
    parser.add_argument("--t0", type=float, help="time.time() taken by the driver just before spawning")
    parser.add_argument("--save-vectors", type=Path, help=f"write the first {VECTORS_KEPT} embeddings (.npy)")
    parser.add_argument("--paired", action="store_true",
                        help="after the JSON object, run a pass per `pass` line on stdin (see above)")
    parser.add_argument("--prepare", action="store_true",
                        help="only make the ONNX export under --onnx-dir (in .venv), print JSON, exit")
    args = parser.parse_args(argv)
    if args.prepare:
        if args.onnx_dir is None:
            parser.error("--prepare needs --onnx-dir")
    elif args.engine is None or args.texts is None:
        parser.error("--engine and --texts are required (or --prepare)")
    elif args.threads < 1 or args.batch_size < 1 or args.repeats < 2:
        parser.error("need --threads >= 1, --batch-size >= 1, --repeats >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    go_offline()  # before any engine imports transformers
    # the Rust tokenizers of every engine use a rayon pool sized to all cores unless told: hold them
    # to the same thread count as the model so no engine gets unmeasured extra CPUs
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    # the driver parses stdout as one JSON object: send everything the libraries print (Python or
    # C level) to stderr and keep the real stdout for the result
    stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    loaded: tuple[Engine, list[str]] | None = None
    try:
        if args.prepare:
            result = prepare(args.model, args.onnx_dir)
        else:
            texts = read_texts(args.texts)
            engine = load(args.engine, model=args.model, bundle=args.bundle, onnx_dir=args.onnx_dir,
                          threads=args.threads)
            result, loaded = run(args, engine, texts), (engine, texts)
    except (EngineError, ModelFolderError) as exc:
        result = {"engine": args.engine, "model": str(args.model), "error": str(exc)}
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()
    if loaded is not None and args.paired:
        serve_paired(*loaded, args.batch_size, stdout)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
