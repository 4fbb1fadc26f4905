"""Step 4 and 6: the bundle's tokenizer, its manifest, and writing the directory atomically."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from fusembed._errors import ExportError
from fusembed._manifest import MANIFEST_NAME, Manifest, sha256_of
from tokenizers import Tokenizer, normalizers

from .resolve import ModelFacts

TOKENIZER_NAME = "tokenizer.json"


def prepare_tokenizer(model_dir: Path, facts: ModelFacts, out_path: Path, *, strip: bool = True) -> Tokenizer:
    """Write `tokenizer.json` that tokenizes exactly as sentence-transformers does for the model.

    sentence-transformers lowercases each text when `do_lower_case` is set, strips it when
    `strip` says so (releases before 5 did; see `verify.strips_whitespace`), and truncates at
    `max_seq_length` word pieces with [CLS] and [SEP] kept. A model's own
    tokenizer.json often says otherwise (all-MiniLM-L6-v2's truncates and pads at 128), so those
    settings are rewritten here rather than trusted. Padding is left to the runtime.
    """
    source = model_dir / TOKENIZER_NAME
    if source.is_file():
        tokenizer = Tokenizer.from_file(str(source))
    else:  # slow-tokenizer-only models: let transformers convert it
        from transformers import AutoTokenizer

        try:
            fast = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
        except Exception as exc:  # transformers fails with OSError, ValueError or TypeError here
            raise ExportError(
                f"{model_dir}: no tokenizer.json, and transformers could not build one from the "
                f"folder's other tokenizer files ({type(exc).__name__}: {exc})"
            ) from None
        if not getattr(fast, "is_fast", False):
            raise ExportError(f"{model_dir}: no tokenizer.json and no fast tokenizer conversion")
        tokenizer = fast.backend_tokenizer
        specials = len(getattr(fast, "all_special_tokens", ()))
        if tokenizer.get_vocab_size(with_added_tokens=False) <= specials:
            # transformers 5 builds an empty vocabulary (special tokens only) when the files are gone
            raise ExportError(
                f"{model_dir}: no tokenizer.json, and transformers could not build one from the "
                f"folder's other tokenizer files (the vocabulary it built holds "
                f"{tokenizer.get_vocab_size(with_added_tokens=False)} tokens)")
    steps: list[normalizers.Normalizer] = [normalizers.Strip()] if strip else []
    if facts.do_lower_case:
        steps.append(normalizers.Lowercase())
    if tokenizer.normalizer is not None:
        steps.append(tokenizer.normalizer)
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.no_padding()
    tokenizer.enable_truncation(
        max_length=facts.max_seq_length, strategy="longest_first", direction=facts.truncation_side
    )
    tokenizer.save(str(out_path))
    return tokenizer


def pad_token_id(tokenizer: Tokenizer, model_dir: Path) -> int:
    """The id of the model's padding token: the one its tokenizer_config.json or
    special_tokens_map.json names (as transformers reads it), else [PAD] or <pad>."""
    named: list[str] = []
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            config = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        token = config.get("pad_token") if isinstance(config, dict) else None
        if isinstance(token, dict):  # {"content": "<pad>", "lstrip": false, ...}
            token = token.get("content")
        if isinstance(token, str):
            named.append(token)
    for token in (*named, "[PAD]", "<pad>"):
        tid = tokenizer.token_to_id(token)
        if tid is not None:
            return int(tid)
    raise ExportError(f"{model_dir}: cannot find the padding token in the tokenizer "
                      f"(looked for {', '.join(repr(t) for t in (*named, '[PAD]', '<pad>'))})")


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Fill in every file's sha256 and write `manifest.json`."""
    names = {manifest.tokenizer, *(v.file for v in manifest.variants.values())}
    if manifest.check:
        names.add(manifest.check)
    files = {name: sha256_of(directory / name) for name in sorted(names)}
    final = replace(manifest, files=files)
    (directory / MANIFEST_NAME).write_text(final.to_json(), encoding="utf-8")
    return final


@contextlib.contextmanager
def staged_directory(out_dir: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging directory next to `out_dir`; publish it only if the block succeeds.

    On any error the staging directory is removed and `out_dir` is left as it was, so a failed
    export never leaves a half-written bundle behind.
    """
    out_dir = out_dir.resolve()
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    if out_dir.exists() and not (out_dir / MANIFEST_NAME).is_file() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} exists and is not a fusembed bundle; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.chmod(0o755)  # mkdtemp makes it 0700; a bundle is shared like any other install
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
