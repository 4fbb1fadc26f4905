"""Request checking and response shapes, without HTTP: every client mistake is an ApiError with a
4xx status and a message that names the input and the reason."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fusembed._errors import ApiError
from fusembed.server import Limits
from fusembed.server._protocol import api_error_body, parse_request, response_body

MODELS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def parse(payload: object, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_request(body, limits=limits or Limits(), models=MODELS, dim=384)


def test_string_and_list_inputs() -> None:
    one = parse({"model": MODELS[0], "input": "hello"})
    many = parse({"model": MODELS[1], "input": ["a", "b"], "encoding_format": "base64", "user": "u"})
    assert one.texts == ["hello"] and one.encoding_format == "float"
    assert many.texts == ["a", "b"] and many.encoding_format == "base64"
    assert parse({"model": MODELS[0], "input": "x", "dimensions": 384}).texts == ["x"]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        ([1, 2], 400, "must be a JSON object, got an array"),
        ({"input": "x"}, 400, "'model' must be a string"),
        ({"model": "gpt-4", "input": "x"}, 404, "'gpt-4' does not exist"),
        ({"model": MODELS[0]}, 400, "'input' is required"),
        ({"model": MODELS[0], "input": 5}, 400, "got a number"),
        ({"model": MODELS[0], "input": []}, 400, "empty list"),
        ({"model": MODELS[0], "input": ""}, 400, "'input' is an empty string"),
        ({"model": MODELS[0], "input": ["ok", ""]}, 400, r"'input\[1\]' is an empty string"),
        ({"model": MODELS[0], "input": ["ok", None]}, 400, r"'input\[1\]' is null, expected a string"),
        ({"model": MODELS[0], "input": ["ok", {"a": 1}]}, 400, r"'input\[1\]' is an object"),
        ({"model": MODELS[0], "input": ["ok", "a\ud800"]}, 400, r"'input\[1\]' has a lone surrogate at"),
        ({"model": MODELS[0], "input": [101, 2023]}, 400, "token arrays are not accepted"),
        ({"model": MODELS[0], "input": [[101, 2023]]}, 400, "token arrays are not accepted"),
        ({"model": MODELS[0], "input": [["a", "b"]]}, 400, r"'input\[0\]' is an array, expected a string"),
        ({"model": MODELS[0], "input": ["a", []]}, 400, r"'input\[1\]' is an array, expected a string"),
        (b'{"model": "m", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "too deeply"),
        (b'{"model": "m", "input": "a", "dimensions": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),
        ({"model": MODELS[0], "input": "x", "encoding_format": "int8"}, 400, "'float' or 'base64'"),
        ({"model": MODELS[0], "input": "x", "dimensions": 385}, 400, "384 dimensions: send 1 to 384"),
        ({"model": MODELS[0], "input": "x", "dimensions": 0}, 400, "send 1 to 384"),
        ({"model": MODELS[0], "input": "x", "dimensions": 2.5}, 400, "send 1 to 384"),
        ({"model": MODELS[0], "input": "x", "dimensions": True}, 400, "dimensions"),
        ({"model": MODELS[0], "input": "x", "prompt_name": "query"}, 400,
         "'query', which this model does not define; its prompts: none"),
        ({"model": MODELS[0], "input": "x", "user": 3}, 400, "'user' must be a string"),
        (
            {"model": MODELS[0], "input": "x", "temperature": 1},
            400,
            "unrecognized request argument.*temperature",
        ),
    ],
)
def test_client_mistakes(payload: object, status: int, message: str) -> None:
    with pytest.raises(ApiError, match=message) as caught:
        parse(payload)
    assert caught.value.status == status
    error = json.loads(api_error_body(caught.value))["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"


def test_prompt_name_and_dimensions() -> None:
    prompts = {"query": "query: ", "passage": "passage: "}

    def with_prompts(payload: dict[str, object], default: str = ""):  # type: ignore[no-untyped-def]
        return parse_request(json.dumps(payload).encode(), limits=Limits(), models=MODELS, dim=384,
                             prompts=prompts, default_prompt=default)

    asked = with_prompts({"model": MODELS[0], "input": ["a", "b"], "prompt_name": "passage",
                          "dimensions": 64})
    assert asked.texts == ["passage: a", "passage: b"] and asked.dimensions == 64
    assert with_prompts({"model": MODELS[0], "input": "a"}, default="query: ").texts == ["query: a"]
    assert with_prompts({"model": MODELS[0], "input": "a", "dimensions": 384}).dimensions is None
    with pytest.raises(ApiError, match="'search', which this model does not define; its prompts: "
                                       "'query', 'passage'") as caught:
        with_prompts({"model": MODELS[0], "input": "a", "prompt_name": "search"})
    assert caught.value.status == 400 and caught.value.param == "prompt_name"


def test_limits_name_the_input() -> None:
    limits = Limits(max_inputs=3, max_input_chars=10)
    with pytest.raises(ApiError, match="4 items; the limit is 3"):
        parse({"model": MODELS[0], "input": ["a"] * 4}, limits)
    with pytest.raises(ApiError, match=r"'input\[2\]' has 11 characters; the limit is 10"):
        parse({"model": MODELS[0], "input": ["a", "b", "x" * 11]}, limits)


def test_response_float_and_base64_round_trip() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    for fmt in ("float", "base64"):
        body = json.loads(response_body(vectors, model="m", prompt_tokens=17, encoding_format=fmt))  # type: ignore[arg-type]
        assert body["object"] == "list" and body["model"] == "m"
        assert body["usage"] == {"prompt_tokens": 17, "total_tokens": 17}
        assert [d["index"] for d in body["data"]] == [0, 1, 2]
        assert all(d["object"] == "embedding" for d in body["data"])
        if fmt == "float":
            got = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
        else:
            got = np.stack(
                [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
            )
        np.testing.assert_array_equal(got, vectors)  # exact: float32 survives both encodings


def test_float_responses_write_the_shortest_text_of_each_float32() -> None:
    """As OpenAI's API sends them: 0.1 as float32 is written "0.1", not the float64 digits of the
    float32 value (0.10000000149011612); any vector, strided or not, reads back exactly."""
    vectors = np.array([[0.1, -2.5, 1e-8, 3.0]], dtype=np.float32)
    text = response_body(vectors, model="m", prompt_tokens=1, encoding_format="float").decode()
    assert '"embedding":[0.1,-2.5,1e-8,3.0]' in text
    strided = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)[::2, ::3]
    body = json.loads(response_body(strided, model="m", prompt_tokens=1, encoding_format="float"))
    got = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got, strided)
