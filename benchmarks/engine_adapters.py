"""One adapter per embedding engine: load it, timed, and give back `encode(texts, batch_size)`.

    st-torch        sentence-transformers on torch (CPU), torch.set_num_threads(threads)
    st-onnx-fp32    sentence-transformers' ONNX backend (optimum export of the model, unoptimised)
    st-onnx-int8    the same backend with sentence-transformers' avx512_vnni dynamic int8 model
    st-onnx-int8-avx2  the same with its avx2 preset (u8 weights, per-tensor activations)
    fastembed       fastembed on the st-onnx-fp32 export, mean pooling / normalisation from the model
    fusembed-fp32   fusembed Encoder on a bundle, precision="fp32"
    fusembed-int8   fusembed Encoder on a bundle, precision="int8"
    fusembed-auto   fusembed Encoder on a bundle, precision="auto" (what a user gets by default)

Each adapter imports its engine's libraries itself, inside the function, so that any engine's
virtualenv can import this module; `engines.py` measures what they return.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model_folder import (
    INT8_AVX2_FILE,
    INT8_FILE,
    is_prepared,
    max_seq_length,
    need_optimum,
    pooling_of,
    prepared_dir,
)

ENGINES = ("st-torch", "st-onnx-fp32", "st-onnx-int8", "st-onnx-int8-avx2", "fastembed", "fusembed-fp32",
           "fusembed-int8", "fusembed-auto")
FusembedPrecision = Literal["fp32", "int8", "auto"]
_FUSEMBED: dict[str, FusembedPrecision] = {"fp32": "fp32", "int8": "int8", "auto": "auto"}

Encode = Callable[[list[str], int], Any]  # (texts, batch_size) -> (n, dim) float array


@dataclass
class Engine:
    encode: Encode
    import_s: float
    load_s: float
    packages: list[str]  # distributions whose versions the result lists
    notes: list[str] = field(default_factory=list)
    precision: str = ""  # the fusembed variant that ran (what "auto" chose)
    excluded_s: float = 0.0  # spent making the missing ONNX export: not part of the cold start


class EngineError(RuntimeError):
    """The engine cannot run here (missing package, bundle or export): reported as JSON."""


def load(engine: str, *, model: Path, bundle: Path | None, onnx_dir: Path | None, threads: int) -> Engine:
    """Load `engine` (one of ENGINES) for the model folder `model` (fusembed: its bundle)."""
    if engine.startswith("st-"):
        return load_st(engine, model, onnx_dir, threads)
    if engine == "fastembed":
        return load_fastembed(model, onnx_dir, threads)
    if engine.startswith("fusembed-") and engine.removeprefix("fusembed-") in _FUSEMBED:
        if bundle is None:
            raise EngineError(f"--engine {engine} needs --bundle (a fusembed bundle folder)")
        return load_fusembed(bundle, _FUSEMBED[engine.removeprefix("fusembed-")], threads)
    raise EngineError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def ensure_prepared(engine: str, model: Path, onnx_dir: Path | None, notes: list[str]) -> tuple[Path, float]:
    """The local ONNX export's folder, and the seconds spent making it here (to leave out of the
    timings): an st-onnx engine that finds none runs `engines.py --prepare` in a child process."""
    if onnx_dir is None:
        raise EngineError(f"--engine {engine} needs --onnx-dir (where the local ONNX export lives)")
    target = prepared_dir(model, onnx_dir)
    if is_prepared(target):
        return target, 0.0
    prepare = f".venv/bin/python benchmarks/engines.py --prepare --model {model} --onnx-dir {onnx_dir}"
    if engine == "fastembed":  # its venv has no torch to export with
        raise EngineError(f"no ONNX export in {target}: run `{prepare}` first")
    # a child process: the export's torch model and optimum must not count in this process's RSS
    start = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).with_name("engines.py")), "--prepare",
                    "--model", str(model), "--onnx-dir", str(onnx_dir)], check=True, stdout=sys.stderr)
    spent = time.perf_counter() - start
    notes.append(f"the ONNX export was missing: made it in a child process ({spent:.1f} s), "
                 "left out of first_embedding_s; the OS file cache was warm afterwards")
    return target, spent


def load_st(engine: str, model_dir: Path, onnx_dir: Path | None, threads: int) -> Engine:
    backend = engine.removeprefix("st-")
    files = {"onnx-fp32": "onnx/model.onnx", "onnx-int8": INT8_FILE, "onnx-int8-avx2": INT8_AVX2_FILE}
    if backend != "torch" and backend not in files:
        raise EngineError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    notes: list[str] = []
    prep_s = 0.0
    if backend != "torch":
        need_optimum()
        target, prep_s = ensure_prepared(engine, model_dir, onnx_dir, notes)
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

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if backend == "torch":
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        notes.append(f"torch.set_num_threads({threads})")
    else:
        # model_kwargs go to optimum's ORTModel.from_pretrained, which takes session_options:
        # the same thread settings the fusembed runtime uses
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        file_name = files[backend]
        model = SentenceTransformer(str(target), device="cpu", backend="onnx", local_files_only=True,
                                    model_kwargs={"provider": "CPUExecutionProvider",
                                                  "session_options": options, "file_name": file_name})
        first: Any = model[0]  # sentence-transformers 6 types a module as `Tensor | Module`
        got = first.auto_model.session.get_session_options().intra_op_num_threads
        notes += [f"onnxruntime session_options via model_kwargs: intra_op_num_threads={got}, "
                  "inter_op_num_threads=1, sequential; CPUExecutionProvider",
                  f"model file {file_name} from sentence-transformers' optimum export (no graph "
                  "optimisation beyond onnxruntime's load-time defaults); pooling and normalisation "
                  f"run in torch, torch.set_num_threads({threads})",
                  "import_s includes onnxruntime and optimum.onnxruntime, which sentence-transformers "
                  "would otherwise import during load"]
        if backend.startswith("onnx-int8"):
            preset = "avx2" if backend.endswith("avx2") else "avx512_vnni"
            notes.append(f"int8: export_dynamic_quantized_onnx_model(model, '{preset}', ...), "
                         "onnxruntime dynamic quantisation (activation scale per batch)")
    load_s = time.perf_counter() - start
    notes.append(f"sentence-transformers max_seq_length={model.max_seq_length}")

    def encode(texts: list[str], batch_size: int) -> Any:
        return model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)

    return Engine(encode, import_s, load_s, packages, notes, excluded_s=prep_s)


def load_fastembed(model_dir: Path, onnx_dir: Path | None, threads: int) -> Engine:
    notes: list[str] = []
    target, _ = ensure_prepared("fastembed", model_dir, onnx_dir, notes)
    folder = target / "fastembed"
    pooling, normalized, dim = pooling_of(model_dir)
    start = time.perf_counter()
    try:
        import numpy as np

        # fastembed is installed only in .venv-fastembed, where mypy does not run
        from fastembed import TextEmbedding  # type: ignore[import-not-found]
        from fastembed.common.model_description import ModelSource, PoolingType  # type: ignore[import-not-found]
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
    model = TextEmbedding(model_name=name, threads=threads, providers=["CPUExecutionProvider"],
                          specific_model_path=str(folder), cache_dir=str(target.parent / "fastembed_cache"),
                          local_files_only=True)
    load_s = time.perf_counter() - start
    notes += [f"fastembed TextEmbedding(threads={threads}): onnxruntime intra_op and inter_op "
              f"threads = {threads}; ORT_ENABLE_ALL",
              f"model: the st-onnx-fp32 export ({folder}/onnx/model.onnx), {pooling} pooling and "
              f"normalization={normalized} from the model's modules.json and pooling config",
              f"truncation at {max_seq_length(model_dir)} (tokenizer_config model_max_length set to "
              "sentence-transformers' max_seq_length); batches are taken in input order, not sorted "
              "by length"]

    def encode(texts: list[str], batch_size: int) -> Any:
        return np.stack(list(model.embed(texts, batch_size=batch_size)))

    return Engine(encode, import_s, load_s, ["fastembed", "onnxruntime", "tokenizers", "numpy"], notes)


def load_fusembed(bundle: Path, precision: FusembedPrecision, threads: int) -> Engine:
    start = time.perf_counter()
    from fusembed import Encoder

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    enc = Encoder(bundle, device="cpu", precision=precision, threads=threads)
    load_s = time.perf_counter() - start
    variant = enc.variant  # for "auto", the one it chose on this CPU
    notes = [f"fusembed Encoder(threads={threads}): onnxruntime intra_op_num_threads={threads}, "
             "inter_op_num_threads=1, sequential",
             f"bundle {bundle}, variant {variant.file}"
             + (f", scheme {variant.scheme}" if variant.precision == "int8" and variant.scheme else "")]
    if precision == "auto":
        notes.append(f"auto chose {enc.precision}: {enc.choice.reason}")

    def encode(texts: list[str], batch_size: int) -> Any:
        return enc.encode(texts, batch_size=batch_size)

    return Engine(encode, import_s, load_s, ["fusembed", "onnxruntime", "tokenizers", "numpy"], notes,
                  precision=enc.precision)
