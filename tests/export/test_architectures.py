"""Architectures beyond BERT (DistilBERT, MPNet, RoBERTa, XLM-RoBERTa, ModernBERT, and the Qwen3
decoder with last-token pooling), exported from small replicas: random weights, a real tokenizer of
the model's class. RoBERTa's, ModernBERT's and Qwen's byte-level BPE and XLM-RoBERTa's SentencePiece
(Unigram, Metaspace) give a leading or trailing space tokens of their own, so the bundle must treat
edge whitespace exactly as the installed sentence-transformers does (releases before 5 strip each
text; 5.x does not)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fusembed import Encoder, read_manifest
from fusembed.export import ExportOptions, export_model
from fusembed.export.texts import EDGE_TEXTS, varied_texts
from fusembed.export.verify import load_sentence_transformer, strips_whitespace, token_ids_of

# ModernBERT's modelling code imports torch.fx, which imports torch.utils.mkldnn, which warns
# about torch's own deprecated decorator: torch's warning, raised on import, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

def _save_st(hf: Path, out: Path, pooling_mode: str = "mean") -> Path:
    """`hf` (a transformers model folder) as a sentence-transformers folder, normalised."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 5.x moved the modules; the old path warns
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]
    transformer = models.Transformer(str(hf), max_seq_length=128)
    pooling = models.Pooling(32, pooling_mode=pooling_mode)
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(out))
    return out


def _tiny(config_class: Any, model_class: Any, tokenizer: Any, hf: Path) -> None:
    """A 2-layer, 32-wide model of the class, random weights, beside its tokenizer in `hf`."""
    import torch

    config = config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, max_position_embeddings=130,
                          pad_token_id=tokenizer.pad_token_id, type_vocab_size=1)
    torch.manual_seed(0)
    model_class(config).eval().save_pretrained(hf)


@pytest.fixture(scope="module")
def roberta_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RoBERTa with a byte-level BPE trained here, in transformers' RobertaTokenizerFast."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    root = tmp_path_factory.mktemp("roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(varied_texts(2000, seed=5) + list(EDGE_TEXTS), vocab_size=800,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(root))
    tokenizer = RobertaTokenizerFast(vocab_file=str(root / "vocab.json"),
                                     merges_file=str(root / "merges.txt"))
    tokenizer.save_pretrained(root / "hf")
    _tiny(RobertaConfig, RobertaModel, tokenizer, root / "hf")
    return _save_st(root / "hf", root / "st")


@pytest.fixture(scope="module")
def xlm_roberta_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XLM-RoBERTa with a SentencePiece Unigram model trained here (Metaspace, <s> ... </s>), in
    transformers' XLMRobertaTokenizerFast."""
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    root = tmp_path_factory.mktemp("xlm-roberta")
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(varied_texts(2000, seed=5) + list(EDGE_TEXTS), vocab_size=800,
                           special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>")
    sp.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    sp.save(str(root / "tokenizer.json"))
    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(root / "tokenizer.json"))
    tokenizer.save_pretrained(root / "hf")
    _tiny(XLMRobertaConfig, XLMRobertaModel, tokenizer, root / "hf")
    return _save_st(root / "hf", root / "st")


@pytest.fixture(scope="module")
def modernbert_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ModernBERT (rotary positions, local and global attention) with a byte-level BPE trained
    here, framed [CLS] ... [SEP], in transformers' PreTrainedTokenizerFast as ModernBERT ships it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("modernbert")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(varied_texts(2000, seed=5) + list(EDGE_TEXTS), vocab_size=800,
                            special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    bpe.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(root / "hf")
    # A local window (16) shorter than max_seq_length, so long texts take both attention kinds.
    config = ModernBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
                              pad_token_id=3, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                              sep_token_id=2, global_attn_every_n_layers=2, local_attention=16)
    torch.manual_seed(0)
    ModernBertModel(config).eval().save_pretrained(root / "hf")
    return _save_st(root / "hf", root / "st")


def _wordpiece_vocab() -> Path:
    """The uncased WordPiece vocabulary of the embedded default model."""
    from fusembed.export.replicas import _embedded_tokenizer_dir

    return _embedded_tokenizer_dir() / "vocab.txt"


@pytest.fixture(scope="module")
def distilbert_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DistilBERT (no token type ids) with the real WordPiece vocabulary, DistilBertTokenizerFast."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    root = tmp_path_factory.mktemp("distilbert")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(_wordpiece_vocab()))
    tokenizer.save_pretrained(root / "hf")
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    torch.manual_seed(0)
    DistilBertModel(config).eval().save_pretrained(root / "hf")
    return _save_st(root / "hf", root / "st")


@pytest.fixture(scope="module")
def mpnet_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MPNet (relative position buckets) with MPNetTokenizerFast over the WordPiece vocabulary;
    its <s>, </s> and <pad> are added tokens, so the pad id must come from its config."""
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    root = tmp_path_factory.mktemp("mpnet")
    if "vocab_file" in inspect.signature(MPNetTokenizerFast.__init__).parameters:  # transformers 4
        tokenizer = MPNetTokenizerFast(vocab_file=str(_wordpiece_vocab()))
    else:  # transformers 5 takes the vocabulary (or its file) as `vocab`
        tokenizer = MPNetTokenizerFast(vocab=str(_wordpiece_vocab()))
    tokenizer.save_pretrained(root / "hf")
    _tiny(MPNetConfig, MPNetModel, tokenizer, root / "hf")
    return _save_st(root / "hf", root / "st")


@pytest.fixture(scope="module")
def qwen3_replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen3 decoder (causal attention, rotary positions, grouped KV heads) with last-token
    pooling, as Qwen3-Embedding is: byte-level BPE in Qwen2TokenizerFast, `<|endoftext|>` appended
    to every text and used as the pad token, padding on the left."""
    import torch
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3Model

    root = tmp_path_factory.mktemp("qwen3")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(varied_texts(2000, seed=5) + list(EDGE_TEXTS), vocab_size=800,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    bpe.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|endoftext|>", 0)])
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", unk_token=None, bos_token=None,
                                   padding_side="left")
    tokenizer.save_pretrained(root / "hf")
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen3Model(config).eval().save_pretrained(root / "hf")
    return _save_st(root / "hf", root / "st", pooling_mode="lasttoken")


def test_dense_layer_after_cls_pooling_is_fused(tmp_path: Path) -> None:
    """LaBSE's stack: CLS pooling, a Dense layer with tanh (to a smaller dimension), Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]
    tokenizer = BertTokenizerFast(vocab_file=str(_wordpiece_vocab()))
    tokenizer.save_pretrained(tmp_path / "hf")
    _tiny(BertConfig, BertModel, tokenizer, tmp_path / "hf")
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


@pytest.mark.parametrize("replica", ["distilbert_replica", "mpnet_replica", "roberta_replica",
                                     "xlm_roberta_replica", "modernbert_replica", "qwen3_replica"])
def test_exports_with_exact_token_ids_and_parity(replica: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    folder: Path = request.getfixturevalue(replica)
    # Random weights give near-isotropic vectors whose top-10 neighbours reorder on any rounding, and
    # their draw differs between transformers releases: the ranking budget is for real models.
    options = ExportOptions(variants=("fp32", "int8"), int8_min_top10=0.0)
    report = export_model(folder, tmp_path / "bundle", options=options)
    manifest = read_manifest(report.bundle)
    assert set(manifest.variants) == {"fp32", "int8"}, report.rejected
    fp32 = manifest.variants["fp32"].parity
    # The manifest records the fused attention: onnxruntime's for the BERT family, fusembed's own
    # for MPNet's position-biased attention; ModernBERT and Qwen3 have no fusion rules yet.
    attention = {"mpnet_replica": "MultiHeadAttention", "modernbert_replica": None,
                 "qwen3_replica": None}.get(replica, "Attention")
    fusions = manifest.variants["fp32"].fusions
    assert (attention in fusions) if attention else not fusions, fusions
    assert fp32.tokenization_match and fp32.min_cosine >= 0.99999
    assert "   leading and trailing spaces   " in EDGE_TEXTS  # the parity texts hold edge whitespace

    st = load_sentence_transformer(folder)
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
