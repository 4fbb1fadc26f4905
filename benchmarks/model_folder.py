"""A sentence-transformers model folder, as the engine comparison reads it: the model's own
figures (truncation length, pooling, dimension, token counts), the same for every engine, and the
local ONNX export that the sentence-transformers ONNX engines and fastembed load.

The export is made once per model under an `--onnx-dir` with sentence-transformers' own ONNX path
(optimum), offline: `engines.py --prepare` runs `prepare`. Only the standard library is imported at
module level (tokenizers and sentence-transformers inside the functions that need them), so the
fastembed virtualenv can import this too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

# the names export_dynamic_quantized_onnx_model writes for its avx512_vnni and avx2 presets
INT8_FILE = "onnx/model_qint8_avx512_vnni.onnx"
INT8_AVX2_FILE = "onnx/model_quint8_avx2.onnx"


class ModelFolderError(RuntimeError):
    """The model folder does not say what an engine needs (reported as the engine's JSON error)."""


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} if there is no such file."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
        raise ModelFolderError(f"pooling config {model_dir / pool_path} has modes {modes}; "
                               "expected exactly one")
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
    need_optimum()
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


OPTIMUM_MISSING = (
    "sentence-transformers' ONNX backend needs optimum, which is not installed here: "
    "`pip install -e '.[compare]'` (optimum-onnx needs transformers < 4.58, so use a virtual "
    "environment like `make test-compat`'s: transformers 4.57 with sentence-transformers 5)"
)


def need_optimum() -> None:
    """The st-onnx engines and their export run through optimum; say so before a traceback does."""
    if importlib.util.find_spec("optimum") is None:
        raise ModelFolderError(OPTIMUM_MISSING)
