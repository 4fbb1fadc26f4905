"""Measure one embedding engine in a process of its own and print one JSON object on stdout.

`benchmarks/compare.py` runs this once per engine and model, each in a fresh process, so every
engine gets the same cold start and its own peak RSS. Engines:

    st-torch        sentence-transformers on torch (CPU), torch.set_num_threads(threads)
    st-onnx-fp32    sentence-transformers' ONNX backend (optimum export of the model, unoptimised)
    st-onnx-int8    the same backend with sentence-transformers' avx512_vnni dynamic int8 model
    st-onnx-int8-avx2  the same with its avx2 preset (u8 weights, per-tensor activations)
    fastembed       fastembed on the st-onnx-fp32 export, mean pooling / normalisation from the model
    fusembed-fp32   fusembed Encoder on a bundle, precision="fp32"
    fusembed-int8   fusembed Encoder on a bundle, precision="int8"
    fusembed-auto   fusembed Encoder on a bundle, precision="auto" (what a user gets by default)

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
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("st-torch", "st-onnx-fp32", "st-onnx-int8", "st-onnx-int8-avx2", "fastembed", "fusembed-fp32",
           "fusembed-int8", "fusembed-auto")
# the names export_dynamic_quantized_onnx_model writes for its avx512_vnni and avx2 presets
INT8_FILE = "onnx/model_qint8_avx512_vnni.onnx"
INT8_AVX2_FILE = "onnx/model_quint8_avx2.onnx"
VECTORS_KEPT = 64

Encode = Callable[[list[str], int], Any]  # (texts, batch_size) -> (n, dim) float array


@dataclass
class Engine:
    encode: Encode
    import_s: float
    load_s: float
    packages: list[str]
    notes: list[str] = field(default_factory=list)
    precision: str = ""  # the fusembed variant that ran (what "auto" chose)


class EngineError(RuntimeError):
    """The engine cannot run here (missing package, bundle or export): reported as JSON."""


# --- the model's own figures (read from its files, the same for every engine) ---

def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def max_seq_length(model_dir: Path) -> int:
    """The truncation length sentence-transformers uses for this model."""
    configured = read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if configured:
        return int(configured)
    # what sentence-transformers falls back to when the model does not say
    limits = [read_json(model_dir / "tokenizer_config.json").get("model_max_length"),
              read_json(model_dir / "config.json").get("max_position_embeddings")]
    return min(int(x) for x in limits if isinstance(x, int) and 0 < x < 10**9)


def pooling_of(model_dir: Path) -> tuple[str, bool, int]:
    """(pooling mode, normalised, dim) from modules.json and the Pooling module's config."""
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    pool_path = next(m["path"] for m in modules if m["type"].endswith(".Pooling"))
    config = read_json(model_dir / pool_path / "config.json")
    modes = [k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
             for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
    if len(modes) != 1:
        raise EngineError(f"pooling config {model_dir / pool_path} has modes {modes}; expected exactly one")
    normalized = any(m["type"].endswith(".Normalize") for m in modules)
    return modes[0], normalized, int(config["word_embedding_dimension"])


def count_tokens(model_dir: Path, texts: list[str]) -> int:
    """Non-padding tokens ([CLS] and [SEP] included) after truncation at max_seq_length."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # the model's tokenizer.json pads to a fixed 128: we count real tokens
    tokenizer.enable_truncation(max_seq_length(model_dir))
    return sum(len(e.ids) for e in tokenizer.encode_batch(texts))


# --- the local ONNX export shared by st-onnx-* and fastembed ---

def prepared_dir(model_dir: Path, onnx_dir: Path) -> Path:
    """Where the export of `model_dir` lives: readable name plus a hash of the full path."""
    resolved = model_dir.resolve()
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{resolved.parent.name}-{resolved.name}")
    return onnx_dir / f"{readable}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def is_prepared(target: Path) -> bool:
    return all((target / f).is_file()
               for f in ("onnx/model.onnx", INT8_FILE, INT8_AVX2_FILE, "fastembed/onnx/model.onnx"))


def prepare(model_dir: Path, onnx_dir: Path) -> dict[str, Any]:
    """Export the model with sentence-transformers' own ONNX path, offline, once.

    sentence-transformers exports through optimum when a folder has no onnx/model.onnx; the
    installed model folder must stay untouched, so the export works on a copy and publishes it with
    one rename (a failed export leaves no half-written folder that later runs would trust).
    """
    target = prepared_dir(model_dir, onnx_dir)
    if is_prepared(target):
        return {"prepared": str(target), "exported": False}
    start = time.perf_counter()
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(model_dir, work)
    cpu = {"provider": "CPUExecutionProvider"}
    exported = SentenceTransformer(str(work), device="cpu", backend="onnx", local_files_only=True,
                                   model_kwargs=dict(cpu))
    exported.save_pretrained(str(work))  # writes onnx/model.onnx, the documented way to keep it
    # reload from disk: the quantiser reads the saved file, not the export's temporary folder
    model = SentenceTransformer(str(work), device="cpu", backend="onnx", local_files_only=True,
                                model_kwargs={**cpu, "file_name": "onnx/model.onnx"})
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(work))
    export_dynamic_quantized_onnx_model(model, "avx2", str(work))

    # fastembed reads tokenizer.json, tokenizer_config.json, config.json and special_tokens_map.json
    # from the model's folder and truncates at tokenizer_config's model_max_length (512 here), not
    # at sentence-transformers' max_seq_length (256): give it the model's own files with that one
    # figure set to what sentence-transformers uses, so all engines truncate alike.
    fast = work / "fastembed"
    (fast / "onnx").mkdir(parents=True)
    os.link(work / "onnx/model.onnx", fast / "onnx/model.onnx")
    for name in ("tokenizer.json", "config.json", "special_tokens_map.json"):
        shutil.copy2(model_dir / name, fast / name)
    tokenizer_config = read_json(model_dir / "tokenizer_config.json")
    tokenizer_config["model_max_length"] = max_seq_length(model_dir)
    (fast / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")

    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    return {"prepared": str(target), "exported": True, "seconds": round(time.perf_counter() - start, 2)}


def ensure_prepared(args: argparse.Namespace, notes: list[str]) -> tuple[Path, float]:
    """The export folder, and the seconds spent making it here (to leave out of the timings)."""
    if args.onnx_dir is None:
        raise EngineError(f"--engine {args.engine} needs --onnx-dir (where the local ONNX export lives)")
    target = prepared_dir(args.model, args.onnx_dir)
    if is_prepared(target):
        return target, 0.0
    if args.engine == "fastembed":
        raise EngineError(f"no ONNX export in {target}: run `.venv/bin/python benchmarks/engines.py "
                          f"--prepare --model {args.model} --onnx-dir {args.onnx_dir}` first")
    # a child process: the export's torch model and optimum must not count in this process's RSS
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--prepare", "--model", str(args.model),
                    "--onnx-dir", str(args.onnx_dir)], check=True, stdout=sys.stderr)
    spent = time.perf_counter() - start
    notes.append(f"the ONNX export was missing: made it in a child process ({spent:.1f} s), "
                 "left out of first_embedding_s; the OS file cache was warm afterwards")
    return target, spent


# --- engines: each imports its libraries itself, so the other venvs never need them ---

def load_st(args: argparse.Namespace, backend: str) -> Engine:
    notes: list[str] = []
    prep_s = 0.0
    if backend != "torch":
        target, prep_s = ensure_prepared(args, notes)
    start = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer

    packages = ["torch", "sentence-transformers", "transformers"]
    if backend != "torch":
        # sentence-transformers imports these lazily at load; count them as the engine's import
        import onnxruntime as ort
        import optimum.onnxruntime  # noqa: F401

        packages += ["onnxruntime", "optimum", "optimum-onnx"]
    import_s = time.perf_counter() - start

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if backend == "torch":
        model = SentenceTransformer(str(args.model), device="cpu", local_files_only=True)
        notes.append(f"torch.set_num_threads({args.threads})")
    else:
        # model_kwargs go to optimum's ORTModel.from_pretrained, which takes session_options:
        # the same thread settings the fusembed runtime uses
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        file_name = {"onnx-fp32": "onnx/model.onnx", "onnx-int8": INT8_FILE,
                     "onnx-int8-avx2": INT8_AVX2_FILE}[backend]
        model = SentenceTransformer(str(target), device="cpu", backend="onnx", local_files_only=True,
                                    model_kwargs={"provider": "CPUExecutionProvider",
                                                  "session_options": options, "file_name": file_name})
        threads = model[0].auto_model.session.get_session_options().intra_op_num_threads
        notes += [f"onnxruntime session_options via model_kwargs: intra_op_num_threads={threads}, "
                  "inter_op_num_threads=1, sequential; CPUExecutionProvider",
                  f"model file {file_name} from sentence-transformers' optimum export (no graph "
                  "optimisation beyond onnxruntime's load-time defaults); pooling and normalisation "
                  f"run in torch, torch.set_num_threads({args.threads})",
                  "import_s includes onnxruntime and optimum.onnxruntime, which sentence-transformers "
                  "would otherwise import during load"]
        if backend.startswith("onnx-int8"):
            preset = "avx2" if backend.endswith("avx2") else "avx512_vnni"
            notes.append(f"int8: export_dynamic_quantized_onnx_model(model, '{preset}', ...), "
                         "onnxruntime dynamic quantisation (activation scale per batch)")
    load_s = time.perf_counter() - start
    notes.append(f"sentence-transformers max_seq_length={model.max_seq_length}")
    if prep_s:
        args.excluded_s += prep_s

    def encode(texts: list[str], batch_size: int) -> Any:
        return model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)

    return Engine(encode, import_s, load_s, packages, notes)


def load_fastembed(args: argparse.Namespace) -> Engine:
    notes: list[str] = []
    target, _ = ensure_prepared(args, notes)
    folder = target / "fastembed"
    pooling, normalized, dim = pooling_of(args.model)
    start = time.perf_counter()
    try:
        import numpy as np
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType
    except ImportError:
        raise EngineError("fastembed is not importable here: run this with .venv-fastembed/bin/python "
                          "(bash benchmarks/fastembed_venv.sh builds it)") from None
    import_s = time.perf_counter() - start

    kinds = {"mean": PoolingType.MEAN, "cls": PoolingType.CLS}
    if pooling not in kinds:
        raise EngineError(f"fastembed has no {pooling!r} pooling (the model's own); "
                          f"it offers {sorted(kinds)}")
    name = f"local/{target.name}"
    start = time.perf_counter()
    # a custom model needs a source; specific_model_path makes fastembed load the folder as is and
    # never look at it, so the source is the folder itself, not a hub id that could be fetched
    TextEmbedding.add_custom_model(model=name, pooling=kinds[pooling], normalization=normalized,
                                   sources=ModelSource(url=folder.as_uri()), dim=dim,
                                   model_file="onnx/model.onnx", output_name="last_hidden_state")
    model = TextEmbedding(model_name=name, threads=args.threads, providers=["CPUExecutionProvider"],
                          specific_model_path=str(folder), cache_dir=str(args.onnx_dir / "fastembed_cache"),
                          local_files_only=True)
    load_s = time.perf_counter() - start
    notes += [f"fastembed TextEmbedding(threads={args.threads}): onnxruntime intra_op and inter_op "
              f"threads = {args.threads}; ORT_ENABLE_ALL",
              f"model: the st-onnx-fp32 export ({folder}/onnx/model.onnx), {pooling} pooling and "
              f"normalization={normalized} from the model's modules.json and pooling config",
              f"truncation at {max_seq_length(args.model)} (tokenizer_config model_max_length set to "
              "sentence-transformers' max_seq_length); batches are taken in input order, not sorted "
              "by length"]

    def encode(texts: list[str], batch_size: int) -> Any:
        return np.stack(list(model.embed(texts, batch_size=batch_size)))

    return Engine(encode, import_s, load_s, ["fastembed", "onnxruntime", "tokenizers", "numpy"], notes)


def load_fusembed(args: argparse.Namespace, precision: str) -> Engine:
    if args.bundle is None:
        raise EngineError(f"--engine {args.engine} needs --bundle (a fusembed bundle folder)")
    start = time.perf_counter()
    from fusembed import Encoder

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    enc = Encoder(args.bundle, device="cpu", precision=precision, threads=args.threads)  # type: ignore[arg-type]
    load_s = time.perf_counter() - start
    if precision == "auto":
        precision = enc.precision  # the variant auto chose on this CPU
        notes_auto = [f"auto chose {enc.precision}: {enc.choice.reason}"]
    else:
        notes_auto = []
    variant = read_json(args.bundle / "manifest.json").get("variants", {}).get(precision, {})
    notes = [f"fusembed Encoder(threads={args.threads}): onnxruntime intra_op_num_threads={args.threads}, "
             "inter_op_num_threads=1, sequential",
             f"bundle {args.bundle}, variant {variant.get('file', precision)}"
             + (f", scheme {variant['scheme']}" if precision == "int8" and variant.get("scheme") else ""),
             *notes_auto]

    def encode(texts: list[str], batch_size: int) -> Any:
        return enc.encode(texts, batch_size=batch_size)

    return Engine(encode, import_s, load_s, ["fusembed", "onnxruntime", "tokenizers", "numpy"], notes,
                  precision=enc.precision)


def load(args: argparse.Namespace) -> Engine:
    if args.engine.startswith("st-"):
        return load_st(args, args.engine.removeprefix("st-"))
    if args.engine == "fastembed":
        return load_fastembed(args)
    return load_fusembed(args, args.engine.removeprefix("fusembed-"))


# --- measurement ---

def process_age_s() -> float:
    """Seconds since this process started, from /proc (10 ms resolution): used without --t0."""
    ticks = os.sysconf("SC_CLK_TCK")
    # field 22 of /proc/self/stat, counted after the ")" that ends the command name
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    exec from the parent, so a child of a big driver process would report the driver's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # macOS: bytes


def versions(packages: Sequence[str]) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def one_pass(engine: Engine, texts: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    engine.encode(texts, batch_size)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        texts = args.texts.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:  # reported as this engine's JSON error, not a traceback
        raise EngineError(f"--texts {args.texts}: cannot read it ({exc})") from None
    if not texts:
        raise EngineError(f"{args.texts} has no lines")
    # the Rust tokenizers of every engine use a rayon pool sized to all cores unless told: hold them
    # to the same thread count as the model so no engine gets unmeasured extra CPUs
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    args.excluded_s = 0.0
    engine = load(args)
    args.loaded = (engine, texts)  # for the --paired passes after the result is printed

    vectors = engine.encode(texts[:1], 1)
    if args.t0 is not None:
        first_s, first_from = time.time() - args.t0, "--t0 (driver's time.time() before spawning)"
    else:
        first_s, first_from = process_age_s(), "process start (/proc, 10 ms resolution)"
    first_s -= args.excluded_s
    rss_after_first = peak_rss_mb()

    for i in range(10):  # warm-up
        engine.encode([texts[i % len(texts)]], 1)
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        engine.encode([texts[i % len(texts)]], 1)
        times.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")

    best = one_pass(engine, texts, args.batch_size)  # the warm-up pass
    for _ in range(0 if args.paired else 3):  # paired: the driver asks for the passes
        best = min(best, one_pass(engine, texts, args.batch_size))
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
        "p50_ms": round(statistics.median(times), 3), "p95_ms": round(cuts[94], 3),
        "p99_ms": round(cuts[98], 3), "repeats": args.repeats,
        "throughput": round(len(texts) / best, 2),
        "rss_after_first_mb": round(rss_after_first, 1), "peak_rss_mb": round(peak, 1),
        "versions": versions(engine.packages),
        "notes": [*engine.notes,
                  "tokens: non-padding tokens incl. [CLS]/[SEP], model tokenizer.json truncated at "
                  "max_seq_length; rss_after_first_mb and peak_rss_mb are VmHWM (peak so far)",
                  f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']} (tokenizer threads)"],
        "saved_vectors": str(args.save_vectors) if args.save_vectors else None,
        **({"precision": engine.precision} if engine.precision else {}),
        **({"throughput_from": "the warm-up pass only (--paired: see pass_s)"} if args.paired else {}),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
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
    # this is a script, not a library: it may set the process's environment, before any import
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(var, "1")
    # the driver parses stdout as one JSON object: send everything the libraries print (Python or
    # C level) to stderr and keep the real stdout for the result
    stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        result = prepare(args.model, args.onnx_dir) if args.prepare else run(args)
        code = 0
    except EngineError as exc:
        result, code = {"engine": args.engine, "model": str(args.model), "error": str(exc)}, 1
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()
    if code == 0 and args.paired and not args.prepare:
        engine, texts = args.loaded
        calls = 0
        for command in sys.stdin:
            if command.strip() == "pass":
                answer: dict[str, Any] = {"pass_s": one_pass(engine, texts, args.batch_size)}
            elif command.startswith("latency "):  # `latency N`: N more batch-1 calls, texts cycling on
                ms = []
                for _ in range(int(command.split()[1])):
                    start = time.perf_counter()
                    engine.encode([texts[calls % len(texts)]], 1)
                    ms.append((time.perf_counter() - start) * 1000)
                    calls += 1
                answer = {"latency_ms": ms}
            else:
                break
            stdout.write(json.dumps(answer) + "\n")
            stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
