"""The bundle tokenizer an Encoder and the server's HTTP workers share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fusembed import BundleError, Encoder
from fusembed._tokens import TextTokenizer
from tokenizers import Tokenizer

EDGE_TEXTS = ["", " ", "How many people live in London?", "😀" * 50, "東京は日本の首都です",
              "a\u0301 é\tñ\n", "word " * 600]


def tokenizer_of(bundle: Path) -> TextTokenizer:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return TextTokenizer(bundle / manifest["tokenizer"], manifest["max_seq_length"])


def test_rows_are_the_ids_of_the_plain_batch_call(minilm_bundle: Path) -> None:
    """`rows` takes the tokenizers call without offsets where there is one; the ids must not change."""
    tokenizer = tokenizer_of(minilm_bundle)
    plain = Tokenizer.from_file(str(minilm_bundle / "tokenizer.json"))
    assert tokenizer.rows(EDGE_TEXTS) == [e.ids for e in plain.encode_batch(EDGE_TEXTS)]
    assert [tokenizer.row(text) for text in EDGE_TEXTS] == tokenizer.rows(EDGE_TEXTS)
    assert max(map(len, tokenizer.rows(EDGE_TEXTS))) == 256  # truncated to max_seq_length


def test_rows_are_what_the_encoder_tokenizes(minilm_bundle: Path) -> None:
    assert tokenizer_of(minilm_bundle).rows(EDGE_TEXTS) == Encoder(minilm_bundle).tokenize(EDGE_TEXTS)


def test_prompt_length_leaves_out_the_trailing_special_token(minilm_bundle: Path) -> None:
    tokenizer = tokenizer_of(minilm_bundle)
    assert tokenizer.prompt_length("query: ") == len(tokenizer.row("query: ")) - 1  # [CLS] query : [SEP]
    assert tokenizer.prompt_length("query: ") == 3


def test_a_tokenizer_that_truncates_elsewhere_is_a_damaged_bundle(minilm_bundle: Path) -> None:
    with pytest.raises(BundleError, match="does not match the manifest's max_seq_length 128"):
        TextTokenizer(minilm_bundle / "tokenizer.json", 128)


def test_an_unreadable_tokenizer_is_a_damaged_bundle(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BundleError, match="not a readable tokenizers file"):
        TextTokenizer(tmp_path / "tokenizer.json", 256)


def test_from_json_is_the_same_tokenizer(minilm_bundle: Path) -> None:
    """How the server's HTTP workers get the model process's tokenizer: same ids, same checks."""
    tokenizer = tokenizer_of(minilm_bundle)
    copy = TextTokenizer.from_json(tokenizer.to_json(), 256)
    assert copy.rows(EDGE_TEXTS) == tokenizer.rows(EDGE_TEXTS)
    assert copy.prompt_length("query: ") == 3 and copy.vocab_size == tokenizer.vocab_size
    with pytest.raises(BundleError, match="does not match the manifest's max_seq_length 128"):
        TextTokenizer.from_json(tokenizer.to_json(), 128)
    with pytest.raises(BundleError, match="not a readable tokenizers text"):
        TextTokenizer.from_json("{not json", 256)
