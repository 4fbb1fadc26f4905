"""Device selection: CUDA is used when present, refused loudly when not, never a silent CPU run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import onnxruntime as ort
import pytest
from fusembed import ArgumentError, Encoder, ProviderUnavailableError
from fusembed import _providers as providers


def test_cpu_providers() -> None:
    assert providers.providers_for("cpu") == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="has CUDA")
def test_cuda_without_onnxruntime_gpu_names_providers_and_extra(tiny_bundle: Path) -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        Encoder(tiny_bundle, device="cuda")
    message = str(info.value)
    assert "CPUExecutionProvider" in message
    assert "pip install 'fusembed[gpu]'" in message


def test_cuda_listed_gives_cuda_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers.providers_for("cuda") == [
        ("CUDAExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"}), "CPUExecutionProvider"]


def test_cuda_session_that_fell_back_to_cpu_is_refused() -> None:
    session = SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"])
    with pytest.raises(ProviderUnavailableError, match="could not start it"):
        providers.check_session_device(session, "cuda")  # type: ignore[arg-type]
    providers.check_session_device(session, "cpu")  # type: ignore[arg-type]


def test_unknown_device() -> None:
    with pytest.raises(ArgumentError, match="device must be one of"):
        providers.providers_for("tpu")


def test_available_cpus_respects_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_cgroup_cpu_quota", lambda: 1.5)
    assert providers.available_cpus() == 1
    monkeypatch.setattr(providers, "_cgroup_cpu_quota", lambda: None)
    assert providers.available_cpus() >= 1


def test_cgroup_v2_quota_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    real_path = providers.Path

    def fake_path(p: str) -> Path:
        return cpu_max if p == "/sys/fs/cgroup/cpu.max" else real_path(p)

    monkeypatch.setattr(providers, "Path", fake_path)
    cpu_max.write_text("250000 100000\n")
    assert providers._cgroup_cpu_quota() == 2.5
    cpu_max.write_text("max 100000\n")
    assert providers._cgroup_cpu_quota() is None
