"""The type checker passes over every room: runtime/, export/ and benchmarks/."""

from __future__ import annotations

from tests.typecheck import run_mypy


def test_mypy_is_clean() -> None:
    done = run_mypy()
    assert done.returncode == 0, f"mypy found problems:\n{done.stdout}{done.stderr}"
    assert "Success: no issues found" in done.stdout
