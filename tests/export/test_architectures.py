"""Architectures beyond BERT, exported from small replicas: random weights, a real tokenizer of
the model's class. Here RoBERTa, whose byte-level BPE gives a leading or trailing space tokens of
its own, so the bundle must treat edge whitespace exactly as the installed sentence-transformers
does (releases before 5 strip each text; 5.x does not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fusembed import Encoder, read_manifest
from fusembed.export import ExportOptions, export_model
from fusembed.export.texts import EDGE_TEXTS, varied_texts
from fusembed.export.verify import load_sentence_transformer, strips_whitespace, token_ids_of


@pytest.fixture(scope="module")
def roberta_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer RoBERTa saved by sentence-transformers (mean pooling, normalised), with a
    byte-level BPE trained here and wrapped in transformers' RobertaTokenizerFast."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 5.x moved the modules; the old path warns
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    root = tmp_path_factory.mktemp("roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(varied_texts(2000, seed=5) + list(EDGE_TEXTS), vocab_size=800,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(root))
    tokenizer = RobertaTokenizerFast(vocab_file=str(root / "vocab.json"),
                                     merges_file=str(root / "merges.txt"))
    hf = root / "hf"
    tokenizer.save_pretrained(hf)
    config = RobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=130,
                           pad_token_id=tokenizer.pad_token_id, type_vocab_size=1)
    torch.manual_seed(0)
    RobertaModel(config).eval().save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=128)
    pooling = models.Pooling(32, pooling_mode="mean")
    out = root / "st"
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(out))
    return out


def test_roberta_exports_with_exact_token_ids_and_parity(roberta_replica: Path, tmp_path: Path) -> None:
    report = export_model(roberta_replica, tmp_path / "bundle", options=ExportOptions(variants=("fp32",)))
    manifest = read_manifest(report.bundle)
    parity = manifest.variants["fp32"].parity
    assert parity.tokenization_match and parity.min_cosine >= 0.99999
    assert "   leading and trailing spaces   " in EDGE_TEXTS  # the parity texts hold edge whitespace

    st = load_sentence_transformer(roberta_replica)
    pad = json.loads((roberta_replica / "tokenizer_config.json").read_text())["pad_token"]
    assert manifest.pad_token_id == st.tokenizer.convert_tokens_to_ids(pad) == 1  # <pad>, not a guess
    texts = ["  two leading", "two trailing  ", " ", "", "\tTab\n", "naïve café 東京 🙂"]
    assert Encoder(report.bundle).tokenize(texts) == [list(ids) for ids in token_ids_of(st, texts)]
    if not strips_whitespace(st):  # this sentence-transformers keeps edge whitespace: so must we
        assert token_ids_of(st, [" x"]) != token_ids_of(st, ["x"])
