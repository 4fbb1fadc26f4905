"""Bundles by name: `Encoder.from_pretrained`, hub ids as the CLI's BUNDLE, and `fusembed push`,
against a hub on 127.0.0.1 (tests/fake_hub.py) and caches in temporary folders: no network, and
~/.cache is never touched. huggingface_hub reads HF_ENDPOINT when it is imported, so the calls run
in subprocesses (with torch blocked) that get the endpoint in their environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from fusembed import ArgumentError, Encoder, HubError, read_manifest
from fusembed._hub import model_card

from tests.blocker import prelude
from tests.bundles import edit_manifest
from tests.fake_hub import FakeHub

TEXTS = ["How many people live in London?", "Around 9 Million people live in London", ""]
REPO = "org/tiny"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as running:
        yield running


@pytest.fixture
def env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """A subprocess environment whose hub is `hub` and whose cache and token live in tmp_path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    return {**clean, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONWARNINGS": "error"}


def bundle_files(bundle: Path) -> dict[str, bytes]:
    """What `fusembed push` uploads of `bundle`, but the card: manifest.json and the files it lists."""
    names = ["manifest.json", *read_manifest(bundle, verify_hashes=False).files]
    return {name: (bundle / name).read_bytes() for name in names}


def python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `code` with torch blocked and `args` as sys.argv[1:]."""
    return subprocess.run([sys.executable, "-c", prelude() + textwrap.dedent(code), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusembed", *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


LOAD = """
    import sys
    import numpy as np
    from fusembed import Encoder
    revision = sys.argv[3] if len(sys.argv) > 3 else None
    enc = Encoder.from_pretrained(sys.argv[1], revision=revision)
    np.save(sys.argv[2], enc.encode(["How many people live in London?",
                                     "Around 9 Million people live in London", ""]))
    print(enc.hub.commit, enc.hub.revision, enc.bundle, enc.prompts)
"""

LOAD_PRECISION = """
    import sys
    import numpy as np
    from fusembed import Encoder
    enc = Encoder.from_pretrained(sys.argv[1], precision=sys.argv[3])
    np.save(sys.argv[2], enc.encode(["How many people live in London?",
                                     "Around 9 Million people live in London", ""]))
"""


def test_download_encodes_as_the_local_bundle_and_then_works_offline(
        tiny_bundle: Path, hub: FakeHub, env: dict[str, str], tmp_path: Path) -> None:
    commit = hub.commit(REPO, {**bundle_files(tiny_bundle), "README.md": b"# a card\n",
                               "unrelated.bin": b"not in the manifest"})
    result = python(LOAD, REPO, str(tmp_path / "hub.npy"), env=env)
    assert result.returncode == 0, result.stderr
    got_commit, revision, folder, _ = result.stdout.split(" ", 3)
    assert (got_commit, revision) == (commit, "main")
    assert Path(folder) == tmp_path / "hf/hub/models--org--tiny/snapshots" / commit
    want = Encoder(tiny_bundle).encode(TEXTS)
    np.testing.assert_array_equal(np.load(tmp_path / "hub.npy"), want)
    # The manifest first, then only the tokenizer, the check set and the variant `auto` runs
    # here, from the manifest's commit.
    fetched = [path for method, path in hub.requests if method == "GET"]
    assert fetched[0] == f"/{REPO}/resolve/main/manifest.json"
    manifest, chosen = read_manifest(tiny_bundle), Encoder(tiny_bundle).variant.file
    assert sorted(fetched[1:]) == sorted(f"/{REPO}/resolve/{commit}/{name}"
                                         for name in (manifest.tokenizer, manifest.check, chosen))

    # Offline, from the cache alone: no request reaches the hub.
    asked = len(hub.requests)
    result = python(LOAD, REPO, str(tmp_path / "offline.npy"), env={**env, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ")[0] == commit and len(hub.requests) == asked
    np.testing.assert_array_equal(np.load(tmp_path / "offline.npy"), want)
    # In this process too, with local_files_only and the cache named.
    enc = Encoder.from_pretrained(REPO, cache_dir=tmp_path / "hf/hub", local_files_only=True)
    assert enc.hub is not None and enc.hub.commit == commit and len(hub.requests) == asked
    np.testing.assert_array_equal(enc.encode(TEXTS), want)


def test_only_the_variant_it_runs_is_fetched(minilm_bundle: Path, hub: FakeHub, env: dict[str, str],
                                             tmp_path: Path) -> None:
    """A CPU encoder of a bundle with fp32, int8 and fp16 downloads one graph, not three; another
    precision asked for later fetches that graph alone."""
    commit = hub.commit(REPO, bundle_files(minilm_bundle))
    manifest = read_manifest(minilm_bundle)
    assert len(manifest.variants) == 3
    chosen = Encoder(minilm_bundle).choice.name
    for precision in ("auto", "fp32" if chosen != "fp32" else "int8"):
        asked = len(hub.requests)
        result = python(LOAD_PRECISION, REPO, str(tmp_path / f"{precision}.npy"), precision, env=env)
        assert result.returncode == 0, result.stderr
        variant = chosen if precision == "auto" else precision
        graphs = [manifest.variants[variant].file]
        fetched = [path for method, path in hub.requests[asked:]  # the manifest aside
                   if method == "GET" and path.startswith(f"/{REPO}/resolve/{commit}/")]
        # the tokenizer and check set come with the first; the second finds them cached
        new = [*([manifest.tokenizer, manifest.check] if precision == "auto" else []), *graphs]
        assert sorted(fetched) == sorted(f"/{REPO}/resolve/{commit}/{name}" for name in new), fetched
        want = Encoder(minilm_bundle, precision=variant).encode(TEXTS)  # type: ignore[arg-type]
        np.testing.assert_array_equal(np.load(tmp_path / f"{precision}.npy"), want)


def test_offline_from_a_cache_laid_out_by_hand(tiny_bundle: Path, tmp_path: Path) -> None:
    """A cache as huggingface_hub lays it out, filled with no server at all."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--org--tiny"
    shutil.copytree(tiny_bundle, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    enc = Encoder.from_pretrained(REPO, cache_dir=tmp_path / "cache", local_files_only=True,
                                  precision="fp32")
    assert enc.hub is not None and (enc.hub.repo_id, enc.hub.commit) == (REPO, commit)
    np.testing.assert_array_equal(enc.encode(TEXTS), Encoder(tiny_bundle, precision="fp32").encode(TEXTS))
    with pytest.raises(HubError, match=r"'org/other' \(revision main\) is not in the Hugging Face cache "
                                       r".*HF_HUB_OFFLINE is set or local_files_only=True"):
        Encoder.from_pretrained("org/other", cache_dir=tmp_path / "cache", local_files_only=True)


def test_a_revision_pins_the_files(tiny_bundle: Path, hub: FakeHub, env: dict[str, str],
                                   tmp_path: Path) -> None:
    first = hub.commit(REPO, bundle_files(tiny_bundle))
    hub.tag(REPO, "v1", first)
    changed = tmp_path / "changed"
    shutil.copytree(tiny_bundle, changed)
    edit_manifest(changed, lambda m: m.update(prompts={"query": "query: "}))
    second = hub.commit(REPO, bundle_files(changed))
    seen = {}
    for revision in ("main", "v1", first, second):
        result = python(LOAD, REPO, str(tmp_path / "out.npy"), revision, env=env)
        assert result.returncode == 0, result.stderr
        commit, asked, _, prompts = result.stdout.strip().split(" ", 3)
        assert asked == revision
        seen[revision] = (commit, prompts)
    assert seen == {"main": (second, "{'query': 'query: '}"), "v1": (first, "{}"), first: (first, "{}"),
                    second: (second, "{'query': 'query: '}")}
    # Both commits stay in the cache, each loadable offline by its hash.
    result = python(LOAD, REPO, str(tmp_path / "out.npy"), first, env={**env, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and result.stdout.startswith(f"{first} {first} "), result.stderr


ERRORS = """
    import sys
    from fusembed import Encoder, FusembedError
    for repo, revision in zip(sys.argv[1::2], sys.argv[2::2]):
        try:
            Encoder.from_pretrained(repo, revision=revision if revision != "-" else None)
        except FusembedError as exc:
            print(type(exc).__name__, exc, sep=": ")
        else:
            print("loaded", repo)
"""


def test_what_cannot_be_loaded_says_why(tiny_bundle: Path, hub: FakeHub, env: dict[str, str]) -> None:
    hub.commit("org/model", {"config.json": b"{}", "README.md": b"# a model\n"})
    hub.commit(REPO, bundle_files(tiny_bundle))
    incomplete = bundle_files(tiny_bundle)
    del incomplete["tokenizer.json"]
    hub.commit("org/incomplete", incomplete)
    result = python(ERRORS, "org/model", "-", "org/gone", "-", REPO, "no-such-branch", "org/incomplete", "-",
                    "not a repo id", "-", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("BundleError: hub repository 'org/model' (revision main) is not a fusembed bundle "
                        "(no manifest.json at its top level); publish a bundle with `fusembed push BUNDLE "
                        "org/name`, or export the model with `fusembed export`")
    assert lines[1].startswith("HubError: hub repository 'org/gone' does not exist, or is private")
    assert lines[2] == ("HubError: hub repository 'org/tiny' has no revision 'no-such-branch' (a branch, "
                        "tag or commit)")
    assert lines[3].startswith("BundleError: hub repository 'org/incomplete' (revision main), commit ")
    assert "the manifest lists 'tokenizer.json', which the repository does not have" in lines[3]
    assert lines[4] == ("ArgumentError: repo_id must be a hub repository id like 'org/name', "
                        "got 'not a repo id'")
    # Offline with nothing cached, and a hub that cannot be reached.
    result = python(ERRORS, REPO, "-", env={**env, "HF_HUB_OFFLINE": "1"})
    assert result.stdout.startswith("HubError: hub repository 'org/tiny' (revision main) is not in the "
                                    "Hugging Face cache ("), result.stderr
    assert "HF_HUB_OFFLINE is set" in result.stdout
    result = python(ERRORS, REPO, "-", env={**env, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert "is not in the Hugging Face cache" in result.stdout and "the hub cannot be reached" in \
        result.stdout, result.stdout + result.stderr
    assert ".." not in result.stdout, result.stdout


@pytest.mark.parametrize("revision", ["", "  ", 3])
def test_an_empty_revision_is_an_argument_error(revision: object) -> None:
    from fusembed._hub import fetch_bundle

    with pytest.raises(ArgumentError, match="revision must be a branch, tag or commit"):
        fetch_bundle(REPO, revision=revision, local_files_only=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"precision": "int9"}, "precision must be"), ({"device": "tpu"}, "device must be one of"),
     ({"device": "cuda", "precision": "int8"}, "'int8' is for the CPU"), ({"threads": 0}, "threads"),
     ({"verify": "no"}, "verify must be True or False")],
)
def test_from_pretrained_checks_its_arguments_before_any_request(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, object], message: str
) -> None:
    from fusembed import _encoder

    def no_request(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(_encoder, "fetch_bundle", no_request)
    with pytest.raises(ArgumentError, match=message):
        Encoder.from_pretrained(REPO, **options)  # type: ignore[arg-type]


TAMPERED = """
    import sys
    import onnxruntime
    from fusembed import BundleError, Encoder
    opened = []
    real = onnxruntime.InferenceSession
    onnxruntime.InferenceSession = lambda *a, **k: opened.append(a) or real(*a, **k)
    try:
        Encoder.from_pretrained(sys.argv[1])
    except BundleError as exc:
        print(exc)
    print("sessions opened:", len(opened))
"""


def test_a_file_whose_sha256_differs_is_never_loaded(tiny_bundle: Path, hub: FakeHub, env: dict[str, str],
                                                     tmp_path: Path) -> None:
    files = bundle_files(tiny_bundle)
    model = Encoder(tiny_bundle).variant.file  # the variant the encoder will fetch and run
    hub.commit("org/tampered", {**files, model: files[model] + b"\0"})
    result = python(TAMPERED, "org/tampered", env=env)
    assert result.returncode == 0, result.stderr
    assert f": {model}: sha256 mismatch (manifest " in result.stdout, result.stdout
    assert "it was not loaded" in result.stdout and "push the bundle again" in result.stdout
    assert result.stdout.endswith("sessions opened: 0\n")

    # A good download damaged in the cache afterwards is refused too, offline as online.
    commit = hub.commit(REPO, files)
    assert python(LOAD, REPO, str(tmp_path / "out.npy"), env=env).returncode == 0
    cached = tmp_path / "hf/hub/models--org--tiny/snapshots" / commit / "tokenizer.json"
    cached.resolve().write_bytes(cached.read_bytes().replace(b"[CLS]", b"[XLS]"))
    result = python(TAMPERED, REPO, env={**env, "HF_HUB_OFFLINE": "1"})
    assert ": tokenizer.json: sha256 mismatch" in result.stdout and str(cached.resolve()) in result.stdout
    assert result.stdout.endswith("sessions opened: 0\n")


def test_import_stays_light() -> None:
    result = subprocess.run([sys.executable, "-c", "import sys, fusembed, fusembed.cli; "
                             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                             "('huggingface_hub', 'requests', 'httpx')))"],
                            capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


# -- the command line --------------------------------------------------------------------------------


def test_cli_takes_a_hub_id_as_bundle(tiny_bundle: Path, hub: FakeHub, env: dict[str, str],
                                      tmp_path: Path) -> None:
    first = hub.commit(REPO, bundle_files(tiny_bundle))
    hub.commit(REPO, {"README.md": b"# gone\n"})  # main moves on to a commit without a bundle
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    result = cli("encode", REPO, "--revision", first, "--input", str(texts), "--output", str(out), env=env)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), Encoder(tiny_bundle).encode(TEXTS))
    result = cli("info", REPO, "--revision", first, env={**env, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and f"snapshots/{first}\n" in result.stdout, result.stderr
    result = cli("info", REPO, env=env)  # main is no bundle any more
    assert result.returncode == 1
    assert result.stderr == ("fusembed info: error: hub repository 'org/tiny' (revision main) is not a "
                             "fusembed bundle (no manifest.json at its top level); publish a bundle with "
                             "`fusembed push BUNDLE org/name`, or export the model with `fusembed export`\n")
    result = cli("encode", "bundels/typo", "--input", str(texts), "--output", str(out), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("fusembed encode: error: 'bundels/typo' is not a local folder, so it was "
                                    "fetched from the hub: hub repository 'bundels/typo' does not exist")
    assert result.stderr.count("\n") == 1


def test_push_then_load_by_name(tiny_bundle: Path, hub: FakeHub, env: dict[str, str], tmp_path: Path) -> None:
    result = cli("push", str(tiny_bundle), "org/pushed", "--private", "--token", "hf_test", env=env)
    assert result.returncode == 0, result.stderr
    commit = hub.repos["org/pushed"].refs["main"]
    assert hub.repos["org/pushed"].private
    assert result.stdout == f"{hub.url}/org/pushed/commit/{commit}\n"
    assert f"(main, commit {commit}): " in result.stderr and "generated model card" in result.stderr
    files = hub.files("org/pushed")
    assert set(files) == {".gitattributes", "README.md", *bundle_files(tiny_bundle)}
    assert all(files[n] == data for n, data in bundle_files(tiny_bundle).items())
    assert files["README.md"].decode() == model_card(read_manifest(tiny_bundle), "org/pushed")

    result = python(LOAD, "org/pushed", str(tmp_path / "pushed.npy"), env=env)
    assert result.returncode == 0 and result.stdout.startswith(commit), result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "pushed.npy"), Encoder(tiny_bundle).encode(TEXTS))

    # A branch, from a bundle with a card of its own: main stays as it was.
    own = tmp_path / "own"
    shutil.copytree(tiny_bundle, own)
    (own / "README.md").write_text("---\nlibrary_name: fusembed\n---\n# Our card\n", encoding="utf-8")
    (own / "notes.txt").write_text("not part of the bundle")
    result = cli("push", str(own), "org/pushed", "--revision", "dev", env=env)
    assert result.returncode == 0, result.stderr
    assert "the bundle's own model card" in result.stderr
    assert hub.repos["org/pushed"].refs["main"] == commit
    assert hub.files("org/pushed", "dev")["README.md"] == (own / "README.md").read_bytes()
    assert "notes.txt" not in hub.files("org/pushed", "dev")


def test_push_refuses_a_damaged_bundle_before_any_request(
        tiny_bundle: Path, hub: FakeHub, env: dict[str, str], tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_bundle, damaged)
    with (damaged / "tokenizer.json").open("a") as fh:
        fh.write(" ")
    result = cli("push", str(damaged), "org/x", env=env)
    assert result.returncode == 1 and "tokenizer.json: sha256 mismatch" in result.stderr
    assert result.stderr.count("\n") == 1 and hub.requests == []


def test_the_model_card_states_what_the_manifest_records(tiny_bundle: Path, tmp_path: Path) -> None:
    manifest = read_manifest(tiny_bundle)
    card = model_card(manifest, "org/tiny")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "fusembed"
    assert front["tags"] == ["sentence-transformers", "sentence-similarity", "feature-extraction", "onnx"]
    assert "base_model" not in front  # exported from a local folder: no hub model to name
    assert 'Encoder.from_pretrained("org/tiny")' in card and "fusembed encode org/tiny " in card
    assert f"| dimension | {manifest.dim} |" in card and f"| pooling | {manifest.pooling} |" in card
    assert f"| max_seq_length | {manifest.max_seq_length} word pieces |" in card
    for name, variant in manifest.variants.items():
        assert f"| {name} | `{variant.file}` | " in card
        assert f"{variant.parity.min_cosine:.6f} ({variant.parity.texts} texts)" in card
        for m in variant.measurements:
            assert f"| {name} | {m.cpu} | {m.isa} | {m.threads} | {m.sentences_per_s:.0f} | " in card
    assert ("## Measured speed" in card) == any(v.measurements for v in manifest.variants.values())

    hubbed = tmp_path / "hubbed"
    shutil.copytree(tiny_bundle, hubbed)
    edit_manifest(hubbed, lambda m: m.update(
        source={"model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc", "kind": "hub"},
        prompts={"query": "query: "}, default_prompt_name="query"))
    card = model_card(read_manifest(hubbed, verify_hashes=False), "org/minilm")
    assert yaml.safe_load(card.split("---\n")[1])["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "| prompt `query` (default) | `'query: '` |" in card
    assert json.loads((hubbed / "manifest.json").read_text())["source"]["kind"] == "hub"
