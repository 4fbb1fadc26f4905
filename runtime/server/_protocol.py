"""The OpenAI embeddings API, as far as a sentence-embedding server speaks it: parsing and checking
a request body, and writing the response and error bodies in OpenAI's shapes.

Nothing here knows about HTTP or the model; every check a client can fail raises `ApiError` with
the status and the OpenAI error object to send, never anything that would become a 500.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import orjson

from .._errors import ApiError, check_positive_int
from .._text import surrogate_at

EncodingFormat = Literal["float", "base64"]


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI sends it."""
    error = {"message": message, "type": type, "param": param, "code": code}
    return json.dumps({"error": error}, ensure_ascii=False).encode()


def api_error_body(exc: ApiError) -> bytes:
    return error_body(exc.message, type=exc.type, param=exc.param, code=exc.code)
_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user", "prompt_name"})


@dataclass(frozen=True)
class Limits:
    """What one request may hold. Past these the request fails with a 4xx, before any work."""

    max_inputs: int = 2048  # OpenAI's own limit per request
    max_input_chars: int = 65_536  # texts are truncated to the model's word pieces anyway
    max_body_bytes: int = 16 * 2**20

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_input_chars", "max_body_bytes"):
            check_positive_int(name, getattr(self, name))


@dataclass(frozen=True)
class EmbeddingRequest:
    texts: list[str]  # with the prompt already put before each
    model: str
    encoding_format: EncodingFormat
    dimensions: int | None = None  # keep the first N dimensions (then unit length again)
    prompt: str = ""  # the prompt each text starts with


def parse_request(body: bytes, *, limits: Limits, models: tuple[str, ...], dim: int,
                  prompts: Mapping[str, str] | None = None, default_prompt: str = "") -> EmbeddingRequest:
    """Check a `POST /v1/embeddings` body. `models` are the names this server answers to;
    `prompts` the model's prompts by name (a request's `prompt_name`), `default_prompt` the text
    put before each input when a request names none."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ApiError(400, "the request body nests JSON arrays or objects too deeply to parse; "
                            "send a JSON object") from None
    except ValueError as exc:  # bad JSON or UTF-8, or an integer too long to convert
        raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_json_type(payload)}")
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise ApiError(400, f"unrecognized request argument(s): {', '.join(unknown)}; this endpoint "
                            f"takes {', '.join(sorted(_FIELDS))}", param=unknown[0])

    model = payload.get("model")
    if not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string naming the model, got {_json_type(model)}; "
                            f"this server has {models[0]!r}", param="model")
    if model not in models:
        raise ApiError(404, f"the model {model!r} does not exist on this server; it serves {models[0]!r}",
                       param="model", code="model_not_found")

    raw_format = payload.get("encoding_format") or "float"
    if raw_format not in ("float", "base64"):
        raise ApiError(400, f"'encoding_format' must be 'float' or 'base64', got {raw_format!r}",
                       param="encoding_format")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                   or not 1 <= dimensions <= dim):
        raise ApiError(400, f"'dimensions' is {dimensions!r}; this model's embeddings have {dim} "
                            f"dimensions: send 1 to {dim}, or leave it out", param="dimensions")
    prompt = default_prompt
    prompt_name = payload.get("prompt_name")
    if prompt_name is not None:
        known = prompts or {}
        if not isinstance(prompt_name, str) or prompt_name not in known:
            listed = ", ".join(repr(n) for n in known) or "none"
            raise ApiError(400, f"'prompt_name' is {prompt_name!r}, which this model does not define; its "
                                f"prompts: {listed}", param="prompt_name")
        prompt = known[prompt_name]
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, f"'user' must be a string, got {_json_type(user)}", param="user")

    encoding_format: EncodingFormat = "base64" if raw_format == "base64" else "float"
    texts = _check_input(payload.get("input"), limits)
    if prompt:
        texts = [prompt + text for text in texts]
    return EmbeddingRequest(texts, model, encoding_format,
                            dimensions if dimensions is not None and dimensions < dim else None, prompt)


def _check_input(raw: object, limits: Limits) -> list[str]:
    if raw is None:
        raise ApiError(400, "'input' is required: a string or a list of strings", param="input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list):
        raise ApiError(400, f"'input' must be a string or a list of strings, got {_json_type(raw)}",
                       param="input")
    if not texts:
        raise ApiError(400, "'input' is an empty list; send at least one string", param="input")
    if len(texts) > limits.max_inputs:
        raise ApiError(400, f"'input' has {len(texts)} items; the limit is {limits.max_inputs} per request",
                       param="input")
    if _token_ids(texts) or any(isinstance(t, list) and _token_ids(t) for t in texts):
        raise ApiError(400, "token arrays are not accepted: send text. This server tokenizes with its "
                            "model's own tokenizer, whose ids differ from OpenAI's", param="input")
    for i, text in enumerate(texts):
        where = "'input'" if isinstance(raw, str) else f"'input[{i}]'"
        if not isinstance(text, str):
            raise ApiError(400, f"{where} is {_json_type(text)}, expected a string", param="input")
        if not text:
            raise ApiError(400, f"{where} is an empty string; every input needs some text", param="input")
        if (at := surrogate_at(text)) is not None:
            raise ApiError(400, f"{where} has a lone surrogate at position {at}, which is not valid Unicode",
                           param="input")
        if len(text) > limits.max_input_chars:
            raise ApiError(400, f"{where} has {len(text)} characters; the limit is "
                                f"{limits.max_input_chars} per input", param="input")
    return texts


def response_body(
    vectors: npt.NDArray[np.float32], *, model: str, prompt_tokens: int, encoding_format: EncodingFormat
) -> bytes:
    """The `list` of `embedding` objects, in input order, with usage, as OpenAI returns it."""
    if encoding_format == "base64":  # little-endian float32 bytes, what the openai client decodes
        little = vectors.astype("<f4", copy=False)
        items: list[object] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:  # each row as a float32 array: orjson writes each value's shortest float32 text
        items = list(np.ascontiguousarray(vectors, dtype=np.float32))
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    body = {"object": "list", "data": data, "model": model, "usage": usage}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _token_ids(values: list[object]) -> bool:
    """Whether `values` is a non-empty list of integers: token ids, as OpenAI's API accepts them."""
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages that talk to API users."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
