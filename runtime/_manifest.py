"""The bundle manifest: everything the runtime knows about a model, typed and checked on load.

A bundle is a directory holding `manifest.json`, the ONNX variant(s) and `tokenizer.json`. Nothing
is guessed from file names: the manifest names every file with its sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ._errors import BundleError

FORMAT = "fusembed-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

Pooling = Literal["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
Similarity = Literal["cosine", "dot"]
Precision = Literal["fp32", "int8", "fp16"]
SourceKind = Literal["local", "hub", "embedded"]


@dataclass(frozen=True)
class Parity:
    """How close a variant's embeddings are to sentence-transformers (torch) on the same texts."""

    texts: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    tokenization_match: bool


@dataclass(frozen=True)
class Quality:
    """A reduced-precision variant measured against the fp32 torch reference on held-out texts."""

    texts: int
    mean_cosine: float
    min_cosine: float
    top10_agreement: float  # mean overlap of top-10 search results with the reference's
    batch_invariance: float  # min cosine of a text encoded alone vs. inside a padded batch


@dataclass(frozen=True)
class Measurement:
    """One variant timed and checked on one machine, by `fusembed export` or `fusembed doctor`.

    `isa` is the CPU's int8 kernel class (see `fusembed.cpu_info`): `precision="auto"` compares
    variants by the measurements taken on the class of the CPU it runs on."""

    isa: str
    cpu: str
    threads: int
    sentences_per_s: float  # the bundle's check texts, batches of 32
    batch1_ms: float  # median latency of one check text
    mean_cosine: float  # against the fp32 sentence-transformers embeddings of the check texts
    min_cosine: float
    by: str  # "export" or "doctor", with fusembed's and onnxruntime's versions


@dataclass(frozen=True)
class Variant:
    """One ONNX file of the bundle and how it was made."""

    precision: Precision
    file: str
    parity: Parity
    optimized: bool = False
    fusions: Mapping[str, int] = field(default_factory=dict)
    scheme: str = ""  # how the weights/activations are stored, e.g. "w8-blockwise-128"
    selection: Mapping[str, Any] = field(default_factory=dict)  # candidates measured, and why
    quality: Quality | None = None
    verified_on: str = "cpu"
    measurements: tuple[Measurement, ...] = ()
    # Every batch's token width is padded to a multiple of this before the graph runs: a kernel
    # whose rounding depends on the row count's parity gives a text the same vector in any batch.
    token_multiple: int = 1


@dataclass(frozen=True)
class Source:
    """Where the exported model came from."""

    model: str
    revision: str | None
    kind: SourceKind


@dataclass(frozen=True)
class Manifest:
    """The contract between export and runtime. See docs/bundle.md."""

    source: Source
    dim: int
    pooling: Pooling
    normalized: bool
    similarity: Similarity
    max_seq_length: int
    inputs: tuple[str, ...]
    output: str
    pad_token_id: int
    tokenizer: str
    variants: Mapping[str, Variant]
    files: Mapping[str, str]
    exporter: Mapping[str, str] = field(default_factory=dict)
    # Texts with their fp32 sentence-transformers embeddings (`check.json`), which `fusembed
    # doctor` runs through every variant on the machine at hand; empty in older bundles.
    check: str = ""
    # The model's prompts (config_sentence_transformers.json): name -> text put before each
    # input. `default_prompt_name` is used when a call names none; `include_prompt` false means
    # the model's pooling leaves the prompt's tokens out. `prompt_in_mask` says the graph does
    # that: an attention_mask value of 2 marks a prompt token, attended to but not pooled.
    # Bundles whose pooling leaves the prompt out without it can encode only without a prompt.
    prompts: Mapping[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True
    prompt_in_mask: bool = False
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    def describe(self, bundle_dir: Path) -> str:
        """What `fusembed info` prints: the model, its pooling and limits, and per variant its
        file, scheme, parity, quality, fused ops, why it was chosen and where it was measured."""
        src = self.source
        lines = [
            f"bundle      {bundle_dir}",
            f"model       {src.model} ({src.kind}, revision {src.revision})",
            f"dim         {self.dim}",
            f"pooling     {self.pooling}",
            f"normalized  {self.normalized}",
            f"similarity  {self.similarity}",
            f"max tokens  {self.max_seq_length}",
            f"inputs      {', '.join(self.inputs)} -> {self.output}",
        ]
        for name, text in self.prompts.items():
            default = " (default)" if name == self.default_prompt_name else ""
            lines.append(f"prompt      {name}{default}: {text!r}")
        lines.append("variants (cosine to sentence-transformers, torch fp32):")
        for name, v in self.variants.items():
            path = bundle_dir / v.file
            size = f"{path.stat().st_size / 1e6:6.1f} MB" if path.is_file() else "  missing"
            p, q = v.parity, v.quality
            lines.append(f"  {name:5} {v.file:17} {size}  {v.scheme}")
            lines.append(f"        parity on {p.texts} edge-case texts: min cosine {p.min_cosine:.7f}, "
                         f"max abs diff {p.max_abs_diff:.1e}")
            if q is not None:
                lines.append(f"        quality on {q.texts} texts: mean cosine {q.mean_cosine:.5f}, min "
                             f"{q.min_cosine:.5f}, top-10 agreement {q.top10_agreement:.3f}, "
                             f"batch invariance {q.batch_invariance:.6f}")
            if v.fusions:
                lines.append(f"        fused: {', '.join(f'{k} {n}' for k, n in v.fusions.items())}")
            if v.selection.get("reason"):
                lines.append(f"        chosen: {v.selection['reason']}")
            for m in v.measurements:
                lines.append(f"        measured on {m.cpu} ({m.isa}, {m.threads} threads) by {m.by}: "
                             f"{m.sentences_per_s:.0f} sentences/s, batch-1 {m.batch1_ms:.2f} ms, "
                             f"min cosine {m.min_cosine:.5f}")
        return "\n".join(lines)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise BundleError(f"{where}: field {key!r} is missing; re-export the bundle")
    value = data[key]
    # bool is an int subclass; a manifest that says `"dim": true` is damaged, not 1-dimensional.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where}: field {key!r} has the wrong type ({value!r}); re-export the bundle")
    return value


def _token_multiple(raw: Mapping[str, Any], where: str) -> int:
    value = _require(raw, "token_multiple", int, where) if "token_multiple" in raw else 1
    if not 1 <= value <= 64:
        raise BundleError(f"{where}: field 'token_multiple' must lie in [1, 64], got {value}; "
                          "the bundle is damaged")
    return int(value)


def _choice(value: str, allowed: Any, key: str, where: str) -> Any:
    if value not in get_args(allowed):
        raise BundleError(f"{where}: {key} {value!r} is not one of {get_args(allowed)}")
    return value


def _quality(raw: Any, where: str) -> Quality | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BundleError(f"{where}: field 'quality' has the wrong type; re-export the bundle")
    return Quality(
        texts=_require(raw, "texts", int, where),
        mean_cosine=float(_require(raw, "mean_cosine", (int, float), where)),
        min_cosine=float(_require(raw, "min_cosine", (int, float), where)),
        top10_agreement=float(_require(raw, "top10_agreement", (int, float), where)),
        batch_invariance=float(_require(raw, "batch_invariance", (int, float), where)),
    )


def _measurements(raw: Any, where: str) -> tuple[Measurement, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BundleError(f"{where}: field 'measurements' has the wrong type; re-export the bundle")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise BundleError(f"{where}: a measurement is not an object; re-export the bundle")
        out.append(Measurement(
            isa=_require(item, "isa", str, where),
            cpu=_require(item, "cpu", str, where),
            threads=_require(item, "threads", int, where),
            sentences_per_s=float(_require(item, "sentences_per_s", (int, float), where)),
            batch1_ms=float(_require(item, "batch1_ms", (int, float), where)),
            mean_cosine=float(_require(item, "mean_cosine", (int, float), where)),
            min_cosine=float(_require(item, "min_cosine", (int, float), where)),
            by=_require(item, "by", str, where),
        ))
    return tuple(out)


def _parse(data: Mapping[str, Any], where: str) -> Manifest:
    if data.get("format") != FORMAT:
        raise BundleError(f"{where}: not a fusembed manifest (format {data.get('format')!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format version {version!r} is not supported by this fusembed "
            f"(it reads version {FORMAT_VERSION}); re-export the model with this version"
        )
    src = _require(data, "source", dict, where)
    variants: dict[str, Variant] = {}
    for name, raw in _require(data, "variants", dict, where).items():
        vwhere = f"{where} variant {name!r}"
        par = _require(raw, "parity", dict, vwhere)
        variants[name] = Variant(
            precision=_choice(_require(raw, "precision", str, vwhere), Precision, "precision", vwhere),
            file=_require(raw, "file", str, vwhere),
            parity=Parity(
                texts=_require(par, "texts", int, vwhere),
                max_abs_diff=float(_require(par, "max_abs_diff", (int, float), vwhere)),
                min_cosine=float(_require(par, "min_cosine", (int, float), vwhere)),
                mean_cosine=float(_require(par, "mean_cosine", (int, float), vwhere)),
                tokenization_match=_require(par, "tokenization_match", bool, vwhere),
            ),
            optimized=bool(raw.get("optimized", False)),
            fusions=dict(raw.get("fusions", {})),
            scheme=str(raw.get("scheme", "")),
            selection=dict(raw.get("selection") or {}),
            quality=_quality(raw.get("quality"), vwhere),
            verified_on=str(raw.get("verified_on", "cpu")),
            measurements=_measurements(raw.get("measurements"), vwhere),
            token_multiple=_token_multiple(raw, vwhere),
        )
    if not variants:
        raise BundleError(f"{where}: the bundle lists no ONNX variants; re-export it")
    return Manifest(
        source=Source(
            model=_require(src, "model", str, where),
            revision=src.get("revision"),
            kind=_choice(_require(src, "kind", str, where), SourceKind, "source kind", where),
        ),
        dim=_require(data, "dim", int, where),
        pooling=_choice(_require(data, "pooling", str, where), Pooling, "pooling", where),
        normalized=_require(data, "normalized", bool, where),
        similarity=_choice(_require(data, "similarity", str, where), Similarity, "similarity", where),
        max_seq_length=_require(data, "max_seq_length", int, where),
        inputs=tuple(_require(data, "inputs", list, where)),
        output=_require(data, "output", str, where),
        pad_token_id=_require(data, "pad_token_id", int, where),
        tokenizer=_require(data, "tokenizer", str, where),
        variants=variants,
        files=dict(_require(data, "files", dict, where)),
        exporter=dict(data.get("exporter", {})),
        check=str(data.get("check") or ""),
        **_prompts(data, where),
    )


def _prompts(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    prompts = data.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise BundleError(f"{where}: 'prompts' must map names to texts; the bundle is damaged")
    default = data.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise BundleError(f"{where}: default_prompt_name {default!r} is not one of the prompts "
                          f"{sorted(prompts)}; the bundle is damaged")
    flags = {name: data.get(name, name == "include_prompt") for name in ("include_prompt", "prompt_in_mask")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise BundleError(f"{where}: {name!r} must be true or false; the bundle is damaged")
    return {"prompts": dict(prompts), "default_prompt_name": default, **flags}


def read_manifest(bundle_dir: Path, *, verify_hashes: bool = True,
                  files: Collection[str] | None = None) -> Manifest:
    """Read and check `bundle_dir/manifest.json`, and that the files it lists are there with
    (by default) their sha256; `files` checks only those of the listed files (an Encoder checks
    the tokenizer and the variant it runs).

    Raises:
        BundleError: naming the file that is missing, unreadable, damaged or of another format.
    """
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle directory {str(bundle_dir)!r} does not exist or is not a directory")
    path = bundle_dir / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(
            f"{path}: no manifest; this is not a fusembed bundle (create one with `fusembed export`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); the bundle is damaged") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object; the bundle is damaged")
    manifest = _parse(data, str(path))
    named = {manifest.tokenizer, *(v.file for v in manifest.variants.values())}
    if manifest.check:
        named.add(manifest.check)
    for name in sorted(named - set(manifest.files)):
        raise BundleError(f"{path}: file {name!r} has no sha256 entry; the bundle is damaged")
    check_files(bundle_dir, manifest, manifest.files if files is None else files,
                verify_hashes=verify_hashes)
    return manifest


def check_files(bundle_dir: Path, manifest: Manifest, names: Collection[str], *,
                verify_hashes: bool = True) -> None:
    """Check that the listed files among `names` are in `bundle_dir`, with (by default) the
    sha256 the manifest gives them.

    Raises:
        BundleError: naming the file that is missing, unreadable or damaged.
    """
    for name, expected in manifest.files.items():
        if name not in names:
            continue
        file = bundle_dir / name
        if not file.is_file():
            raise BundleError(f"{file}: listed in the manifest but missing from the bundle")
        if verify_hashes:
            try:
                actual = sha256_of(file)
            except OSError as exc:
                raise BundleError(f"{file}: cannot be read ({exc})") from None
            if actual != expected:
                raise BundleError(
                    f"{file}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…); "
                    "the file was changed or damaged after export; re-export the bundle"
                )
