"""Choosing onnxruntime execution providers and thread counts. Never falls back silently."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from ._errors import ArgumentError, ProviderUnavailableError

Device = Literal["cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("cpu", "cuda")

_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# onnxruntime's CUDA memory arena: grow by what a call asks, not to the next power of two, so that
# memory settles at what the largest (bucketed, warmed-up) shape needs instead of up to twice it.
CUDA_OPTIONS: dict[str, str] = {"arena_extend_strategy": "kSameAsRequested"}
Provider = str | tuple[str, dict[str, str]]


def providers_for(device: str) -> list[Provider]:
    """The provider list for `device`, or a clear error when this onnxruntime build lacks it."""
    if device not in DEVICES:
        raise ArgumentError("device", f"must be one of {DEVICES}, got {device!r}")
    wanted = _PROVIDER[device]
    available = ort.get_available_providers()
    if wanted not in available:
        raise ProviderUnavailableError(
            f"device={device!r} needs onnxruntime's {wanted}, but this onnxruntime "
            f"({ort.__version__}) has only {available}. Install the GPU build with "
            "`pip install 'fusembed[gpu]'` (and uninstall the CPU-only `onnxruntime`), "
            "or use device='cpu'."
        )
    # The CPU provider stays listed after CUDA for the few shape ops CUDA assigns to the host.
    return [(wanted, dict(CUDA_OPTIONS)), "CPUExecutionProvider"] if device == "cuda" else [wanted]


def check_session_device(session: ort.InferenceSession, device: str) -> None:
    """onnxruntime drops CUDA with only a log line when its libraries fail to load: refuse that."""
    if device == "cuda" and session.get_providers()[0] != _PROVIDER["cuda"]:
        raise ProviderUnavailableError(
            "onnxruntime lists the CUDA provider but could not start it (missing CUDA or cuDNN "
            f"libraries?); the session runs on {session.get_providers()}. Fix the CUDA install "
            "or use device='cpu'."
        )


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, then the cgroup quota (containers), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1q = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        v1p = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if v1q.is_file() and v1p.is_file():
            q = int(v1q.read_text())
            return None if q <= 0 else q / int(v1p.read_text())
    except (OSError, ValueError):
        return None
    return None
