"""Architectures beyond BERT (DistilBERT, MPNet, RoBERTa, XLM-RoBERTa, ModernBERT, and the Qwen3
decoder with last-token pooling), exported from small replicas: random weights, a real tokenizer of
the model's class. RoBERTa's, ModernBERT's and Qwen's byte-level BPE and XLM-RoBERTa's SentencePiece
(Unigram, Metaspace) give a leading or trailing space tokens of their own, so the bundle must treat
edge whitespace exactly as the installed sentence-transformers does (releases before 5 strip each
text; 5.x does not)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fusembed import Encoder, read_manifest
from fusembed.export import ExportOptions, architectures, export_model
from fusembed.export.texts import EDGE_TEXTS, varied_texts
from fusembed.export.verify import load_sentence_transformer, strips_whitespace, token_ids_of

# ModernBERT's modelling code imports torch.fx, which imports torch.utils.mkldnn, which warns
# about torch's own deprecated decorator: torch's warning, raised on import, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def test_dense_layer_after_cls_pooling_is_fused(tmp_path: Path) -> None:
    """LaBSE's stack: CLS pooling, a Dense layer with tanh (to a smaller dimension), Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]
    tokenizer = architectures.wordpiece_tokenizer("BertTokenizerFast")
    tokenizer.save_pretrained(tmp_path / "hf")
    architectures.save_encoder(BertConfig, BertModel, tokenizer, tmp_path / "hf", architectures.TINY)
    torch.manual_seed(1)
    modules = [models.Transformer(str(tmp_path / "hf"), max_seq_length=128),
               models.Pooling(32, pooling_mode="cls"),
               models.Dense(32, 16, activation_function=torch.nn.Tanh()), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(tmp_path / "st"))

    report = export_model(tmp_path / "st", tmp_path / "bundle",
                          options=ExportOptions(variants=("fp32", "fp16"), int8_min_top10=0.0))
    assert report.manifest.dim == 16 and report.manifest.pooling == "cls"
    assert set(report.manifest.variants) == {"fp32", "fp16"}, report.rejected
    assert report.manifest.variants["fp32"].parity.min_cosine >= 0.99999
    st = load_sentence_transformer(tmp_path / "st")
    texts = varied_texts(20, seed=3)
    got = Encoder(report.bundle).encode(texts)
    assert got.shape == (20, 16)
    assert float(np.min(np.sum(got * st.encode(texts), axis=1))) >= 0.99999


@pytest.mark.parametrize("replica", list(architectures.ARCHITECTURES))
def test_exports_with_exact_token_ids_and_parity(replica: str, tmp_path: Path) -> None:
    folder = architectures.build(replica, tmp_path / "replica")
    # Random weights give near-isotropic vectors whose top-10 neighbours reorder on any rounding, and
    # their draw differs between transformers releases: the ranking budget is for real models.
    options = ExportOptions(variants=("fp32", "int8"), int8_min_top10=0.0)
    report = export_model(folder, tmp_path / "bundle", options=options)
    manifest = read_manifest(report.bundle)
    assert set(manifest.variants) == {"fp32", "int8"}, report.rejected
    fp32 = manifest.variants["fp32"].parity
    # The manifest records the fused attention: onnxruntime's for the BERT family, fusembed's own
    # for MPNet's position-biased attention; ModernBERT and Qwen3 have no fusion rules yet.
    attention = {"mpnet": "MultiHeadAttention", "modernbert": None, "qwen3": None}.get(replica, "Attention")
    fusions = manifest.variants["fp32"].fusions
    assert (attention in fusions) if attention else not fusions, fusions
    assert fp32.tokenization_match and fp32.min_cosine >= 0.99999
    assert "   leading and trailing spaces   " in EDGE_TEXTS  # the parity texts hold edge whitespace

    st = load_sentence_transformer(folder)
    assert len(st.tokenizer) >= 500  # a real vocabulary, not only special tokens
    pad = json.loads((folder / "tokenizer_config.json").read_text())["pad_token"]
    assert manifest.pad_token_id == st.tokenizer.convert_tokens_to_ids(pad)  # the model's own, not a guess
    texts = ["  two leading", "two trailing  ", " ", "", "\tTab\n", "naïve café 東京 🙂", "query: a"]
    ids = [list(row) for row in token_ids_of(st, texts)]
    framing = st.tokenizer("")["input_ids"]  # the special tokens the model's tokenizer adds
    assert ids[3] == framing and ids[0][-1] == framing[-1] and len(framing) >= 1
    assert Encoder(report.bundle).tokenize(texts) == ids
    if not strips_whitespace(st):  # this sentence-transformers keeps edge whitespace, and it counts
        edged = "   leading and trailing spaces   "
        assert token_ids_of(st, [edged]) != token_ids_of(st, [edged.strip()])
