"""`pip install 'fusembed[export]'` keeps the transformers and sentence-transformers users have:
both release lines satisfy the extra, so installing it downgrades neither."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _export_extra() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = (Requirement(r) for r in project["optional-dependencies"]["export"])
    return {r.name: r for r in requirements}


@pytest.mark.parametrize(("package", "versions"), [
    ("transformers", ["4.57.6", "5.0.0", "5.24.0"]),
    ("sentence-transformers", ["5.7.0", "6.0.0", "6.2.0"]),
])
def test_export_extra_accepts_both_release_lines(package: str, versions: list[str]) -> None:
    requirement = _export_extra()[package]
    for version in versions:
        assert Version(version) in requirement.specifier, (package, version, str(requirement))


def test_export_extra_needs_nothing_that_pins_transformers_below_5() -> None:
    assert "optimum-onnx" not in _export_extra()  # optimum-onnx 0.1 requires transformers < 4.58


def test_the_installed_pair_is_one_the_extra_accepts() -> None:
    import importlib.metadata as md

    extra = _export_extra()
    for package in ("transformers", "sentence-transformers"):
        assert Version(md.version(package)) in extra[package].specifier
