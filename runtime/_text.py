"""Text checks shared by the Encoder, the server and corpus readers."""

from __future__ import annotations


def surrogate_at(text: str) -> int | None:
    """Where `text` holds a lone surrogate (not valid Unicode, so not encodable as UTF-8 and
    refused by the Rust tokenizer), or None. Python strings may hold one, e.g. from JSON's
    "\\ud800" escape or from bytes decoded with errors="surrogateescape"."""
    if text.isascii():  # the common case, and fast
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
