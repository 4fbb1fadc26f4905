"""A damaged bundle gives a BundleError that names the file, never an onnxruntime traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fusembed import ArgumentError, BundleError, Encoder, read_manifest
from fusembed._manifest import sha256_of

from tests.bundles import edit_manifest


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def test_a_good_bundle_loads(bundle: Path) -> None:
    assert Encoder(bundle).encode("hello").shape == (32,)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        Encoder(tmp_path / "nope")


def test_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"manifest\.json: no manifest"):
        Encoder(tmp_path)


def test_manifest_not_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        Encoder(bundle)


def test_unknown_format_version(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(format_version=99))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        Encoder(bundle)


def test_missing_field(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.pop("dim"))
    with pytest.raises(BundleError, match="'dim' is missing"):
        Encoder(bundle)


def test_wrong_field_type(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(normalized="yes"))
    with pytest.raises(BundleError, match="'normalized' has the wrong type"):
        read_manifest(bundle)


def test_missing_onnx_file(bundle: Path) -> None:
    (bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx: listed in the manifest but missing"):
        Encoder(bundle)


def test_changed_file_fails_its_sha256(bundle: Path) -> None:
    with (bundle / "model.onnx").open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00garbage\x00")
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 mismatch"):
        Encoder(bundle)


def test_damaged_onnx_with_matching_hash_is_still_named(bundle: Path) -> None:
    onnx_file = bundle / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:5000])  # truncated protobuf
    edit_manifest(bundle, lambda d: d["files"].update({"model.onnx": sha256_of(onnx_file)}))
    with pytest.raises(BundleError, match=r"model\.onnx: onnxruntime cannot load this ONNX file"):
        Encoder(bundle)


@pytest.mark.parametrize(
    "change", [{"dim": 100}, {"output": "token_embeddings"}], ids=["dim", "output"])
def test_a_manifest_that_does_not_match_the_graphs_output_is_a_damaged_bundle(
    bundle: Path, change: dict[str, object]
) -> None:
    edit_manifest(bundle, lambda d: d.update(change))
    with pytest.raises(BundleError, match=r"model\.onnx: the graph's outputs \(sentence_embedding "
                                          r"\['\w+', 32\]\) do not include .*the bundle is damaged"):
        Encoder(bundle)


def test_damaged_tokenizer(bundle: Path) -> None:
    (bundle / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')
    with pytest.raises(BundleError, match=r"tokenizer\.json: not a readable tokenizers file"):
        Encoder(bundle, verify=False)


def test_unreadable_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BundleError, match=r"manifest\.json: cannot be read"):
        Encoder(bundle)


def test_precision_the_bundle_lacks_lists_what_it_has(bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"no 'int8' variant; it has \['fp32'\]"):
        Encoder(bundle, precision="int8")


def test_int8_is_refused_on_cuda_before_anything_loads(bundle: Path) -> None:
    from fusembed._encoder import _choose_variant

    with pytest.raises(ArgumentError, match="int8' is for the CPU"):
        _choose_variant(read_manifest(bundle), "cuda", "int8")
    # An argument error on any machine, with or without a GPU build of onnxruntime.
    with pytest.raises(ArgumentError, match="int8' is for the CPU"):
        Encoder(bundle, device="cuda", precision="int8")


@pytest.mark.parametrize("verify", ["no", 0, None])
def test_verify_must_be_a_bool(bundle: Path, verify: object) -> None:
    with pytest.raises(ArgumentError, match="verify must be True or False"):
        Encoder(bundle, verify=verify)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["include_prompt", "prompt_in_mask"])
def test_a_prompt_flag_that_is_not_a_bool_is_a_damaged_bundle(bundle: Path, flag: str) -> None:
    edit_manifest(bundle, lambda d: d.update({flag: "yes"}))
    with pytest.raises(BundleError, match=rf"'{flag}' must be true or false; the bundle is damaged"):
        Encoder(bundle)


@pytest.mark.parametrize(("value", "message"), [
    ("2", "'token_multiple' has the wrong type"), (True, "'token_multiple' has the wrong type"),
    (0, r"'token_multiple' must lie in \[1, 64\], got 0"), (1000, "got 1000")])
def test_a_bad_token_multiple_is_a_damaged_bundle(bundle: Path, value: object, message: str) -> None:
    edit_manifest(bundle, lambda d: d["variants"]["fp32"].update(token_multiple=value))
    with pytest.raises(BundleError, match=message):
        read_manifest(bundle)


def test_a_manifest_without_token_multiple_pads_nothing(bundle: Path) -> None:
    """Bundles exported before the field existed run as they did."""
    edit_manifest(bundle, lambda d: [v.pop("token_multiple", None) for v in d["variants"].values()])
    assert {v.token_multiple for v in read_manifest(bundle).variants.values()} == {1}


def test_an_encoder_checks_the_files_it_reads_and_read_manifest_checks_all(
        minilm_bundle: Path, tmp_path: Path) -> None:
    """A missing graph of a variant the encoder does not run does not stop it; read_manifest (what
    `fusembed info` and `doctor` use) still names it, and a damaged graph it does run stops it."""
    copy = tmp_path / "bundle"
    shutil.copytree(minilm_bundle, copy)
    (copy / "model.fp16.onnx").unlink()
    assert Encoder(copy, precision="fp32").encode("hello").shape == (384,)
    with pytest.raises(BundleError, match=r"model\.fp16\.onnx: listed in the manifest but missing"):
        read_manifest(copy)
    (copy / "model.onnx").write_bytes(b"\0")
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 mismatch"):
        Encoder(copy, precision="fp32")
