"""Replicas of the architectures beyond BERT: random weights, each with a real tokenizer of the
model's class, trained here on fusembed's own varied texts, saved as sentence-transformers folders.

The hub cannot be reached from the machines this project is built on, so these stand in for the
models users bring (all-mpnet-base-v2, multilingual-e5, ModernBERT embedders, Qwen3-Embedding):
parity, token ids and speed depend on the architecture and the tokenizer's class, not on trained
weights. They say nothing about retrieval quality. The tests build them at 2 layers x 32 wide;
`benchmarks/architectures.py` at MiniLM's size (6 layers x 384) for speed.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .replicas import _embedded_tokenizer_dir
from .texts import EDGE_TEXTS, varied_texts


@dataclass(frozen=True)
class Size:
    layers: int = 2
    hidden: int = 32
    heads: int = 4

    @property
    def intermediate(self) -> int:
        return 2 * self.hidden if self.hidden < 64 else 4 * self.hidden


TINY = Size()
MINILM = Size(layers=6, hidden=384, heads=12)


def build(name: str, out_dir: str | Path, size: Size = TINY) -> Path:
    """Write the `name` replica (one of `ARCHITECTURES`) under `out_dir`; return the
    sentence-transformers folder."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    pooling = ARCHITECTURES[name](root / "hf", size)
    return _save_st(root / "hf", root / "st", size.hidden, pooling)


def _save_st(hf: Path, out: Path, dim: int, pooling_mode: str) -> Path:
    """`hf` (a transformers model folder) as a sentence-transformers folder, normalised."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 5.x moved the modules; the old path warns
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models  # type: ignore[no-redef]
    transformer = models.Transformer(str(hf), max_seq_length=128)
    pooling = models.Pooling(dim, pooling_mode=pooling_mode)
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(out))
    return out


def _save_model(config_class: Any, model_class: Any, hf: Path, **config: Any) -> None:
    import torch

    torch.manual_seed(0)
    model_class(config_class(**config)).eval().save_pretrained(hf)


def save_encoder(config_class: Any, model_class: Any, tokenizer: Any, hf: Path, size: Size) -> None:
    """An encoder of the class at `size`, random weights, beside its tokenizer in `hf`."""
    _save_model(config_class, model_class, hf, vocab_size=len(tokenizer), hidden_size=size.hidden,
                num_hidden_layers=size.layers, num_attention_heads=size.heads,
                intermediate_size=size.intermediate, max_position_embeddings=130,
                pad_token_id=tokenizer.pad_token_id, type_vocab_size=1)


def tokenizer_class(name: str) -> Any:
    """transformers' tokenizer class `name`. transformers 5 keeps the `...TokenizerFast` names as
    aliases it resolves at run time, which its type information does not list."""
    import transformers

    return getattr(transformers, name)


def _training_texts() -> list[str]:
    return varied_texts(2000, seed=5) + list(EDGE_TEXTS)


def wordpiece_vocab() -> Path:
    """The uncased WordPiece vocabulary of the embedded default model."""
    return _embedded_tokenizer_dir() / "vocab.txt"


def wordpiece_tokenizer(name: str) -> Any:
    """transformers' WordPiece tokenizer class `name` over `wordpiece_vocab()`. transformers 4
    takes the file as `vocab_file`; transformers 5 as `vocab`, and ignores `vocab_file` (leaving a
    vocabulary of special tokens only)."""
    cls = tokenizer_class(name)
    if "vocab_file" in inspect.signature(cls.__init__).parameters:
        return cls(vocab_file=str(wordpiece_vocab()))
    return cls(vocab=str(wordpiece_vocab()))


def roberta(hf: Path, size: Size) -> str:
    """RoBERTa with a byte-level BPE trained here, in transformers' RobertaTokenizerFast."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel

    RobertaTokenizerFast = tokenizer_class("RobertaTokenizerFast")

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_training_texts(), vocab_size=800,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    hf.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(hf.parent))
    vocab, merges = str(hf.parent / "vocab.json"), str(hf.parent / "merges.txt")
    if "vocab_file" in inspect.signature(RobertaTokenizerFast.__init__).parameters:  # transformers 4
        tokenizer = RobertaTokenizerFast(vocab_file=vocab, merges_file=merges)
    else:  # transformers 5 ignores vocab_file and merges_file
        tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges)
    tokenizer.save_pretrained(hf)
    save_encoder(RobertaConfig, RobertaModel, tokenizer, hf, size)
    return "mean"


def xlm_roberta(hf: Path, size: Size) -> str:
    """XLM-RoBERTa with a SentencePiece Unigram model trained here (Metaspace, <s> ... </s>), in
    transformers' XLMRobertaTokenizerFast."""
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel

    XLMRobertaTokenizerFast = tokenizer_class("XLMRobertaTokenizerFast")

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(_training_texts(), vocab_size=800,
                           special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>")
    sp.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    hf.mkdir(parents=True, exist_ok=True)
    sp.save(str(hf.parent / "sentencepiece.json"))
    if "vocab_file" in inspect.signature(XLMRobertaTokenizerFast.__init__).parameters:  # transformers 4
        tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(hf.parent / "sentencepiece.json"))
    else:  # transformers 5 builds it from the Unigram pieces and their scores
        pieces = json.loads((hf.parent / "sentencepiece.json").read_text(encoding="utf-8"))["model"]["vocab"]
        tokenizer = XLMRobertaTokenizerFast(vocab=[(piece, score) for piece, score in pieces])
    tokenizer.save_pretrained(hf)
    save_encoder(XLMRobertaConfig, XLMRobertaModel, tokenizer, hf, size)
    return "mean"


def modernbert(hf: Path, size: Size) -> str:
    """ModernBERT (rotary positions, local and global attention) with a byte-level BPE trained
    here, framed [CLS] ... [SEP], in transformers' PreTrainedTokenizerFast as ModernBERT ships it."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_training_texts(), vocab_size=800,
                            special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    bpe.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(hf)
    # A local window (16) shorter than max_seq_length, so long texts take both attention kinds.
    _save_model(ModernBertConfig, ModernBertModel, hf, vocab_size=len(tokenizer), hidden_size=size.hidden,
                num_hidden_layers=size.layers, num_attention_heads=size.heads,
                intermediate_size=size.intermediate, max_position_embeddings=512, pad_token_id=3,
                bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
                global_attn_every_n_layers=2, local_attention=16)
    return "mean"


def distilbert(hf: Path, size: Size) -> str:
    """DistilBERT (no token type ids) with the real WordPiece vocabulary, DistilBertTokenizerFast."""
    from transformers import DistilBertConfig, DistilBertModel


    tokenizer = wordpiece_tokenizer("DistilBertTokenizerFast")
    tokenizer.save_pretrained(hf)
    _save_model(DistilBertConfig, DistilBertModel, hf, vocab_size=len(tokenizer), dim=size.hidden,
                n_layers=size.layers, n_heads=size.heads, hidden_dim=size.intermediate)
    return "mean"


def mpnet(hf: Path, size: Size) -> str:
    """MPNet (relative position buckets) with MPNetTokenizerFast over the WordPiece vocabulary;
    its <s>, </s> and <pad> are added tokens, so the pad id must come from its config."""
    from transformers import MPNetConfig, MPNetModel


    tokenizer = wordpiece_tokenizer("MPNetTokenizerFast")
    tokenizer.save_pretrained(hf)
    save_encoder(MPNetConfig, MPNetModel, tokenizer, hf, size)
    return "mean"


def qwen3(hf: Path, size: Size) -> str:
    """A Qwen3 decoder (causal attention, rotary positions, grouped KV heads) with last-token
    pooling, as Qwen3-Embedding is: byte-level BPE in Qwen2TokenizerFast, `<|endoftext|>` appended
    to every text and used as the pad token, padding on the left."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import Qwen3Config, Qwen3Model

    Qwen2TokenizerFast = tokenizer_class("Qwen2TokenizerFast")

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_training_texts(), vocab_size=800,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    bpe.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|endoftext|>", 0)])
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", unk_token=None, bos_token=None,
                                   padding_side="left")
    tokenizer.save_pretrained(hf)
    _save_model(Qwen3Config, Qwen3Model, hf, vocab_size=len(tokenizer), hidden_size=size.hidden,
                intermediate_size=size.intermediate, num_hidden_layers=size.layers,
                num_attention_heads=size.heads, num_key_value_heads=max(1, size.heads // 2),
                head_dim=size.hidden // size.heads, max_position_embeddings=256,
                tie_word_embeddings=False)
    return "lasttoken"


ARCHITECTURES: dict[str, Callable[[Path, Size], str]] = {
    "distilbert": distilbert, "mpnet": mpnet, "roberta": roberta, "xlm-roberta": xlm_roberta,
    "modernbert": modernbert, "qwen3": qwen3,
}
