"""Prompts and Matryoshka dimensions as sentence-transformers applies them: the bundle carries the
model's prompts, `encode` takes `prompt_name`, `prompt` and `truncate_dim`, and the vectors are
sentence-transformers' own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fusembed import ArgumentError, BundleError, Encoder, read_manifest
from fusembed.export import ExportOptions, architectures, export_model
from fusembed.export.texts import EDGE_TEXTS, varied_texts

PROMPTS = {"query": "query: ", "passage": "passage: "}
TEXTS = varied_texts(40, seed=4) + list(EDGE_TEXTS[:12])


def _with_prompts(folder: Path, default: str | None = None) -> Path:
    config_path = folder / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config.update(prompts=PROMPTS, default_prompt_name=default)
    config_path.write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def e5_style(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An XLM-RoBERTa replica with e5's `query: ` / `passage: ` prompts, and its bundle."""
    root = tmp_path_factory.mktemp("e5")
    folder = _with_prompts(architectures.build("xlm-roberta", root / "replica"))
    report = export_model(folder, root / "bundle", options=ExportOptions(variants=("fp32",)))
    return folder, report.bundle


def _st(folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def test_the_bundle_carries_the_models_prompts(e5_style: tuple[Path, Path]) -> None:
    manifest = read_manifest(e5_style[1])
    assert dict(manifest.prompts) == PROMPTS and manifest.default_prompt_name is None
    encoder = Encoder(e5_style[1])
    assert encoder.prompts == PROMPTS
    assert encoder.prompt_for("query") == "query: " and encoder.prompt_for() == ""


@pytest.mark.parametrize("name", ["query", "passage"])
def test_prompt_name_gives_sentence_transformers_vectors(e5_style: tuple[Path, Path], name: str) -> None:
    folder, bundle = e5_style
    expected = _st(folder).encode(TEXTS, prompt_name=name)
    got = Encoder(bundle).encode(TEXTS, prompt_name=name)
    assert _min_cos(got, expected) >= 0.99999
    # the prompt changes the vectors: it is really applied
    assert _min_cos(Encoder(bundle).encode(TEXTS), expected) < 0.9999
    single = Encoder(bundle).encode(TEXTS[0], prompt_name=name)
    np.testing.assert_allclose(single, got[0], atol=1e-5)


def test_a_prompt_given_as_text_counts_toward_truncation(e5_style: tuple[Path, Path]) -> None:
    folder, bundle = e5_style
    prompt = "Instruct: find passages that answer the question\nQuery: "
    long = [" ".join(["word"] * 400)]  # past max_seq_length: the prompt's tokens push words out
    for texts in (TEXTS, long):
        expected = _st(folder).encode(texts, prompt=prompt)
        got = Encoder(bundle).encode(texts, prompt=prompt, prompt_name="query")  # prompt wins
        assert _min_cos(got, expected) >= 0.99999


def test_default_prompt_name_applies_when_none_is_named(tmp_path: Path) -> None:
    folder = _with_prompts(architectures.build("distilbert", tmp_path / "replica"), default="query")
    bundle = export_model(folder, tmp_path / "bundle", options=ExportOptions(variants=("fp32",))).bundle
    encoder = Encoder(bundle)
    assert encoder.default_prompt_name == "query"
    st = _st(folder)
    assert _min_cos(encoder.encode(TEXTS), st.encode(TEXTS)) >= 0.99999  # both apply "query: "
    assert _min_cos(encoder.encode(TEXTS, prompt=""), st.encode(TEXTS, prompt="")) >= 0.99999


def test_unknown_prompt_name_lists_the_models_prompts(e5_style: tuple[Path, Path]) -> None:
    encoder = Encoder(e5_style[1])
    with pytest.raises(ArgumentError, match=r"'search'.*its prompts: 'query', 'passage'"):
        encoder.encode(["a"], prompt_name="search")
    with pytest.raises(ArgumentError, match="prompt must be a str"):
        encoder.encode(["a"], prompt=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("dim", [8, 16, 32])
def test_truncate_dim_matches_sentence_transformers(e5_style: tuple[Path, Path], dim: int) -> None:
    folder, bundle = e5_style
    expected = _st(folder).encode(TEXTS, truncate_dim=dim)
    got = Encoder(bundle).encode(TEXTS, truncate_dim=dim)
    assert got.shape == (len(TEXTS), dim) == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5)  # not normalised again, as there
    assert np.linalg.norm(got, axis=1).max() < 1.0 or dim == 32
    fixed = Encoder(bundle, truncate_dim=dim)
    assert fixed.dim == dim and fixed.encode(TEXTS).shape == (len(TEXTS), dim)
    assert fixed.encode_tokens(fixed.tokenize(TEXTS)).shape == (len(TEXTS), dim)
    assert fixed.encode(TEXTS[0]).shape == (dim,)


def test_truncate_dim_out_of_range_is_refused(e5_style: tuple[Path, Path]) -> None:
    with pytest.raises(ArgumentError, match="truncate_dim is 33, but this model's embeddings have 32"):
        Encoder(e5_style[1], truncate_dim=33)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ArgumentError, match="truncate_dim"):
            Encoder(e5_style[1]).encode(["a"], truncate_dim=bad)  # type: ignore[arg-type]


def test_a_damaged_prompt_table_is_a_bundle_error(e5_style: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(e5_style[1], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["default_prompt_name"] = "missing"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="default_prompt_name 'missing' is not one of the prompts"):
        Encoder(copy)


def _pooling_leaves_prompt_out(folder: Path) -> Path:
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "include_prompt": False}))
    return folder


@pytest.mark.parametrize("arch", ["xlm-roberta", "qwen3"])
def test_pooling_that_leaves_the_prompt_out_gives_sentence_transformers_vectors(
        arch: str, tmp_path: Path) -> None:
    """include_prompt=false (INSTRUCTOR style): the model attends to the prompt's tokens but pools
    without them. Mean pooling (XLM-RoBERTa) and last-token pooling with a decoder (Qwen3)."""
    folder = _pooling_leaves_prompt_out(_with_prompts(architectures.build(arch, tmp_path / "replica")))
    bundle = export_model(folder, tmp_path / "bundle", options=ExportOptions(variants=("fp32",))).bundle
    assert read_manifest(bundle).prompt_in_mask and not read_manifest(bundle).include_prompt
    st, encoder = _st(folder), Encoder(bundle)
    prompt = "Represent this sentence for retrieving supporting documents: "
    for kwargs in ({"prompt_name": "query"}, {"prompt": prompt}, {}):
        expected = st.encode(TEXTS, **kwargs)
        assert _min_cos(encoder.encode(TEXTS, **kwargs), expected) >= 0.99999, kwargs
        single = encoder.encode(TEXTS[0], **kwargs)
        assert _min_cos(single[None], expected[:1]) >= 0.99999, kwargs
    if arch == "xlm-roberta":  # the prompt's tokens really are left out of the mean
        kept = _with_prompts(architectures.build(arch, tmp_path / "kept"))
        assert _min_cos(encoder.encode(TEXTS, prompt=prompt), _st(kept).encode(TEXTS, prompt=prompt)) < 0.999
        # the server batches requests with and without the prompt together, and marks each row
        texts = TEXTS[:6]
        query, plain = _served(encoder, [{"input": texts, "prompt_name": "query"}, {"input": texts}])
        assert _min_cos(query, st.encode(texts, prompt_name="query")) >= 0.99999
        assert _min_cos(plain, st.encode(texts)) >= 0.99999


def _served(encoder: Encoder, bodies: list[dict[str, Any]]) -> list[np.ndarray]:
    """The vectors `fusembed serve` answers `bodies` with, sent at once (so batched together)."""
    import asyncio

    import httpx
    from fusembed.server import ServerOptions, create_app

    async def main() -> list[np.ndarray]:
        app = create_app(encoder, ServerOptions(max_wait_ms=50))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fusembed") as client:
                model = app.state.model_names[0]
                responses = await asyncio.gather(*(client.post(
                    "/v1/embeddings", json={"model": model, **body}) for body in bodies))
        for response in responses:
            assert response.status_code == 200, response.text
        return [np.asarray([d["embedding"] for d in r.json()["data"]], np.float32) for r in responses]

    return asyncio.run(main())


def test_a_prompt_on_an_older_bundle_whose_pooling_leaves_it_out_is_refused(
        e5_style: tuple[Path, Path], tmp_path: Path) -> None:
    """A bundle whose manifest says include_prompt=false without `prompt_in_mask` has a graph that
    pools every token: a clear error, never vectors that differ from sentence-transformers'."""
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(e5_style[1], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["include_prompt"] = False
    (copy / "manifest.json").write_text(json.dumps(manifest))
    encoder = Encoder(copy)
    assert encoder.encode(["a"]).shape == (1, 32)  # without a prompt it encodes as ever
    with pytest.raises(ArgumentError, match=r"include_prompt=false.*export it again"):
        encoder.encode(["a"], prompt_name="query")
    with pytest.raises(ArgumentError, match=r"include_prompt=false"):
        Encoder(copy, prompt="query: ")
