"""The exception tree and the one check of counts every option uses."""

from __future__ import annotations

import pytest
from fusembed import ApiError, ArgumentError, FusembedError, InputError, Overloaded, ServerBusy, Stopping
from fusembed._errors import check_positive_int


@pytest.mark.parametrize("value", [0, -3, True, False, 2.0, "4", None])
def test_a_count_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(ArgumentError) as caught:
        check_positive_int("shard_rows", value)
    assert caught.value.param == "shard_rows"
    assert str(caught.value) == f"shard_rows must be a positive int, got {value!r}"


def test_none_is_allowed_only_when_said() -> None:
    check_positive_int("threads", None, none_ok=True)
    check_positive_int("threads", 3)
    with pytest.raises(ArgumentError, match=r"^threads must be a positive int or None, got 0$"):
        check_positive_int("threads", 0, none_ok=True)


def test_the_tree() -> None:
    assert issubclass(ArgumentError, ValueError) and issubclass(InputError, ValueError)
    assert issubclass(Overloaded, ServerBusy) and issubclass(Stopping, ServerBusy)
    assert issubclass(ServerBusy, RuntimeError)
    for cls in (ArgumentError, InputError, ServerBusy, ApiError):
        assert issubclass(cls, FusembedError)
    error = ApiError(404, "no such model", param="model", code="model_not_found")
    assert (error.status, error.param, error.code, error.type) == (404, "model", "model_not_found",
                                                                   "invalid_request_error")
