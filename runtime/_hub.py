"""Bundles on a Hugging Face hub: fetch one by repository id (`Encoder.from_pretrained`, the CLI's
`org/name` bundles) and publish one (`fusembed push`).

Files go through `huggingface_hub`, so downloads land in the standard cache (`HF_HOME`,
`HF_HUB_CACHE`), are shared with every other library that uses it, and are served from it offline
(`HF_HUB_OFFLINE=1`). The manifest comes first, and only it and the files it lists are fetched,
all from the one commit the manifest came from; each file is checked against the manifest's
sha256 before anything loads it. `huggingface_hub` is imported here, inside the functions, so
that `import fusembed` stays as light as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import NoReturn

from ._errors import ArgumentError, BundleError, HubError
from ._manifest import MANIFEST_NAME, Manifest, _parse, read_manifest, sha256_of

# A hub repository id: "org/name" (one slash; an unqualified name is never guessed).
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CARD_NAME = "README.md"


@dataclass(frozen=True)
class HubRevision:
    """Where a bundle fetched from the hub came from.

    `revision` is what was asked for (a branch, tag or commit; "main" when nothing was), `commit`
    the commit whose files were loaded: pass it as `revision` to load exactly these files again.
    """

    repo_id: str
    revision: str
    commit: str


@dataclass(frozen=True)
class PushResult:
    """What `push_bundle` published: the repository, branch and commit, and the files uploaded."""

    repo_id: str
    revision: str
    commit: str
    url: str
    files: tuple[str, ...]
    card: str  # "generated", or "the bundle's own" when the folder holds a README.md


def looks_like_repo_id(text: str) -> bool:
    """Whether `text` has the shape of a hub repository id, "org/name"."""
    return bool(_REPO_ID.match(text)) and ".." not in text


def fetch_bundle(
    repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
    token: str | bool | None = None, local_files_only: bool = False, verify: bool = True,
    wanted: Callable[[Manifest], Collection[str]] | None = None,
) -> tuple[Path, HubRevision]:
    """Download (or find in the cache) the bundle in hub repository `repo_id`; returns its local
    folder (a snapshot in the Hugging Face cache) and where it came from. `wanted` picks, from
    the manifest, which of its files to fetch (an Encoder needs the tokenizer and one variant);
    by default every file it lists.

    Raises:
        BundleError: the repository holds no fusembed manifest, its manifest is damaged, or a file
            differs from its sha256 in the manifest (nothing was loaded).
        HubError: the repository or revision does not exist or cannot be accessed, the hub cannot
            be reached, or (offline) the bundle is not in the cache.
        ArgumentError: `repo_id` is not a repository id.
    """
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:  # a declared dependency; missing only in a broken environment
        raise ImportError("fetching bundles from the hub needs huggingface_hub: "
                          "pip install huggingface_hub") from None
    if not isinstance(repo_id, str) or not looks_like_repo_id(repo_id):
        raise ArgumentError("repo_id", f"must be a hub repository id like 'org/name', got {repo_id!r}")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ArgumentError("revision", f"must be a branch, tag or commit, or None for main; "
                            f"got {revision!r}")
    offline = bool(local_files_only or constants.HF_HUB_OFFLINE)
    asked = revision or "main"
    where = f"hub repository {repo_id!r} (revision {asked})"

    def download(filename: str, at: str | None) -> Path:
        return Path(hf_hub_download(repo_id, filename, revision=at, cache_dir=cache_dir, token=token,
                                    local_files_only=offline))

    cache = str(cache_dir or constants.HF_HUB_CACHE)
    with _hub_errors(where, repo_id, revision, cache, offline,
                     missing=lambda: _not_a_bundle(where)):
        manifest_path = download(MANIFEST_NAME, revision)
    folder = manifest_path.parent
    commit = folder.name  # the cache keeps each snapshot under its commit hash
    manifest = _read(manifest_path, f"{where}: {MANIFEST_NAME}")
    names = sorted(manifest.files)
    for name in names:  # every name checked, fetched or not: a bad one means a damaged manifest
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name:
            raise BundleError(f"{where}: the manifest lists {name!r}, which is not a path inside the "
                              "bundle; the bundle is damaged")
    if wanted is not None:
        names = sorted(set(names) & set(wanted(manifest)))
    for name in names:  # from the manifest's own commit, however the branch moves meanwhile
        with _hub_errors(where, repo_id, revision, cache, offline,
                         missing=partial(_incomplete, where, commit, name)):
            got = download(name, commit)
        if verify:
            _check_hash(got, manifest.files[name], where, commit, name)
    return folder, HubRevision(repo_id=repo_id, revision=asked, commit=commit)


def _read(path: Path, where: str) -> Manifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: cannot be read as JSON ({exc}); the bundle is damaged") from None
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object; the bundle is damaged")
    return _parse(data, where)


def _check_hash(path: Path, expected: str, where: str, commit: str, name: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise BundleError(
            f"{where}, commit {commit[:12]}: {name}: sha256 mismatch (manifest {expected[:12]}…, "
            f"file {actual[:12]}…); it was not loaded. The copy in the cache ({path.resolve()}) was "
            "damaged, or the repository's file was changed after export: delete that copy to download "
            "it again, and if it still differs, push the bundle again with `fusembed push`"
        )


def _not_a_bundle(where: str) -> NoReturn:
    raise BundleError(f"{where} is not a fusembed bundle (no {MANIFEST_NAME} at its top level); publish "
                      "a bundle with `fusembed push BUNDLE org/name`, or export the model with "
                      "`fusembed export`")


def _incomplete(where: str, commit: str, name: str) -> NoReturn:
    raise BundleError(f"{where}, commit {commit[:12]}: the manifest lists {name!r}, which the repository "
                      "does not have; the bundle was published incompletely: push it again")


@contextmanager
def _hub_errors(where: str, repo_id: str, revision: str | None, cache: str, offline: bool,
                missing: Callable[[], NoReturn]) -> Iterator[None]:
    """huggingface_hub's exceptions as fusembed errors that say what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except LocalEntryNotFoundError as exc:  # before EntryNotFoundError, its base class
        why = "HF_HUB_OFFLINE is set or local_files_only=True" if offline else \
            f"the hub cannot be reached: {_cause(exc)}"
        raise HubError(f"{where} is not in the Hugging Face cache ({cache}), and {why}. Load it once "
                       "online, or pass a local bundle folder") from None
    except GatedRepoError:  # before RepositoryNotFoundError, its base class
        raise HubError(f"{where} is gated: accept its conditions on the hub, then log in "
                       "(`hf auth login`) or pass a token") from None
    except RepositoryNotFoundError:
        raise HubError(f"hub repository {repo_id!r} does not exist, or is private and this token cannot "
                       "read it (log in with `hf auth login`, or pass a token)") from None
    except RevisionNotFoundError:
        raise HubError(f"hub repository {repo_id!r} has no revision {revision!r} (a branch, tag or "
                       "commit)") from None
    except EntryNotFoundError:
        missing()
    except HfHubHTTPError as exc:
        raise HubError(f"{where}: the hub answered {_cause(exc)}") from None
    except HFValidationError as exc:
        raise ArgumentError("repo_id", f"or revision is not valid on the hub ({exc})") from None
    except OSError as exc:  # the network (requests' and httpx's errors are OSErrors), or the cache's disk
        raise HubError(f"{where}: fetching failed: {_cause(exc)}") from None


def _cause(exc: BaseException) -> str:
    """The first line of `exc`'s message, or of its cause's when it has none of its own."""
    while not str(exc).strip() and exc.__cause__ is not None:
        exc = exc.__cause__
    first = str(exc).strip().splitlines()
    return first[0].rstrip(".") if first else type(exc).__name__  # the caller ends the sentence


# -- publishing ------------------------------------------------------------------------------------


def push_bundle(
    bundle: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
    token: str | None = None, message: str | None = None,
) -> PushResult:
    """Publish the bundle folder `bundle` to hub repository `repo_id` (created if need be): its
    manifest, the files the manifest lists, and a model card.

    The bundle is checked first (every sha256). The card is the folder's own README.md if it has
    one, else one generated from the manifest (`model_card`); the folder is not changed.
    `revision` names a branch, created from main if it does not exist.

    Raises:
        BundleError: the bundle is missing or damaged; nothing was uploaded.
        HubError: the hub refused or could not be reached.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(bundle)
    if not isinstance(repo_id, str) or not looks_like_repo_id(repo_id):
        raise ArgumentError("repo_id", f"must be a hub repository id like 'org/name', got {repo_id!r}")
    manifest = read_manifest(folder, verify_hashes=True)
    names = (MANIFEST_NAME, *sorted(manifest.files))
    own_card = (folder / CARD_NAME).is_file() and CARD_NAME not in manifest.files
    card = (folder / CARD_NAME).read_bytes() if own_card else model_card(manifest, repo_id).encode()
    operations = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(folder / n)) for n in names]
    operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card))
    api = HfApi(token=token)
    where = f"hub repository {repo_id!r}"
    with _push_errors(where):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id, operations=operations, revision=revision,
            commit_message=message or f"fusembed bundle of {_model_name(manifest)}",
        )
    return PushResult(repo_id=repo_id, revision=revision or "main", commit=str(info.oid),
                      url=str(info.commit_url), files=(*names, CARD_NAME),
                      card="the bundle's own" if own_card else "generated")


@contextmanager
def _push_errors(where: str) -> Iterator[None]:
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError:
        raise HubError(f"{where} cannot be written with this token: log in with `hf auth login` (a token "
                       "with write access to the namespace), or pass --token") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = " (log in with `hf auth login`, or pass a token with write access)" \
            if status in (401, 403) else ""
        raise HubError(f"{where}: the hub refused the upload: {_cause(exc)}{hint}") from None
    except HFValidationError as exc:
        raise ArgumentError("revision", f"is not a valid branch name ({exc})") from None
    except OSError as exc:
        raise HubError(f"{where}: uploading failed: {_cause(exc)}") from None


def _model_name(manifest: Manifest) -> str:
    src = manifest.source
    return src.model if src.kind != "local" else Path(src.model).name


def model_card(manifest: Manifest, repo_id: str) -> str:
    """A model card (README.md) for the bundle: front matter the hub indexes, then how to use it and
    what the manifest records about it. Every figure is the manifest's; none is added."""
    src = manifest.source
    hub_model = src.kind in ("hub", "embedded")
    front = ["---", "library_name: fusembed", "tags:",
             *(f"- {t}" for t in ("sentence-transformers", "sentence-similarity", "feature-extraction",
                                  "onnx"))]
    if hub_model:
        front.append(f"base_model: {src.model}")
    front.append("---")
    origin = f"[{src.model}](https://huggingface.co/{src.model})" if hub_model else \
        f"`{_model_name(manifest)}`"
    revision = f" (revision `{src.revision}`)" if src.revision else ""
    body = [
        f"# {repo_id.split('/')[-1]}", "",
        f"{origin}{revision} as a fusembed bundle: ONNX graphs "
        "that go from token ids to the sentence embedding, with the model's pooling"
        f"{' and normalisation' if manifest.normalized else ''} fused in, run by onnxruntime and the "
        "`tokenizers` library, without torch.", "",
        "## Usage", "",
        "```sh", "pip install fusembed", "```", "",
        "```python", "from fusembed import Encoder", "",
        f'model = Encoder.from_pretrained("{repo_id}")',
        'embeddings = model.encode(["How many people live in London?", "London is a big city."])',
        "print(embeddings.shape)", "```", "",
        "From the shell:", "",
        "```sh", f"fusembed encode {repo_id} --input texts.txt --output embeddings.npy",
        f"fusembed serve {repo_id} --port 8080   # OpenAI-compatible /v1/embeddings", "```", "",
        "Files are checked against the sha256 in `manifest.json` before they load; "
        "`revision=` (`--revision`) pins a commit.", "",
        "## The model", "",
        "| | |", "|---|---|",
        f"| dimension | {manifest.dim} |",
        f"| pooling | {manifest.pooling} |",
        f"| normalised | {'yes' if manifest.normalized else 'no'} |",
        f"| similarity | {manifest.similarity} |",
        f"| max_seq_length | {manifest.max_seq_length} word pieces |",
    ]
    for name, text in manifest.prompts.items():
        default = " (default)" if name == manifest.default_prompt_name else ""
        body.append(f"| prompt `{name}`{default} | `{text!r}` |")
    body += ["", "## Variants", "",
             "Cosine to sentence-transformers (torch, fp32), measured at export.", "",
             "| variant | file | scheme | parity: min cosine | quality: mean / min cosine, top-10 "
             "agreement |",
             "|---|---|---|---|---|"]
    for name, v in manifest.variants.items():
        p, q = v.parity, v.quality
        quality = f"{q.mean_cosine:.5f} / {q.min_cosine:.5f}, {q.top10_agreement:.3f} ({q.texts} texts)" \
            if q is not None else ""
        body.append(f"| {name} | `{v.file}` | {v.scheme or v.precision} | {p.min_cosine:.6f} "
                    f"({p.texts} texts) | {quality} |")
    for name, v in manifest.variants.items():
        if v.selection.get("reason"):
            body.append(f"\n{name} scheme `{v.scheme}`: {v.selection['reason']}")
    measured = [(name, m) for name, v in manifest.variants.items() for m in v.measurements]
    if measured:
        body += ["", "## Measured speed", "",
                 "The bundle's check texts, batches of 32; batch-1 is the median latency of one text.", "",
                 "| variant | CPU | int8 class | threads | sentences/s | batch-1 ms | measured by |",
                 "|---|---|---|---|---|---|---|"]
        body += [f"| {name} | {m.cpu} | {m.isa} | {m.threads} | {m.sentences_per_s:.0f} | "
                 f"{m.batch1_ms:.2f} | {m.by} |" for name, m in measured]
    return "\n".join([*front, "", *body]) + "\n"

