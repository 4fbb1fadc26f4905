"""What CPU this is, in the terms that decide onnxruntime's int8 speed.

onnxruntime's CPU provider (MLAS) picks its int8 GEMM kernel from the CPU's features at start-up:
AMX tiles, AVX-512 VNNI, AVX-VNNI, plain AVX-512 or AVX2 on x86-64; the dot-product instructions
(`sdot`/`udot`) or plain NEON on ARM64. Each class has its own speed ratio between int8 and fp32,
so a bundle's measurements are recorded, and `precision="auto"` decides, per class.

The features are read from `/proc/cpuinfo` on Linux (it names AVX-VNNI and AMX, which numpy's
table does not) and from numpy's runtime CPU-dispatch table elsewhere.
"""

from __future__ import annotations

import functools
import importlib
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

IsaClass = Literal["amx", "avx512_vnni", "avx_vnni", "avx512", "avx2", "x86_64", "arm64_dotprod",
                   "arm64", "other"]
# Classes whose int8 GEMM has a dot-product instruction that accumulates in 32 bits. On the
# others (AVX2, AVX-512 without VNNI, old x86) onnxruntime multiplies u8 x s8 pairs into 16 bits
# (vpmaddubsw) and needs extra instructions to widen them, so int8 gains far less over fp32.
DOT_PRODUCT_CLASSES: frozenset[str] = frozenset({"amx", "avx512_vnni", "avx_vnni", "arm64_dotprod"})


@dataclass(frozen=True)
class CpuInfo:
    """The running CPU: its name, architecture, feature flags and int8 kernel class."""

    model: str
    machine: str  # platform.machine(): "x86_64", "aarch64", "arm64", "AMD64" …
    flags: frozenset[str]  # lower case, as /proc/cpuinfo spells them
    isa: IsaClass

    @property
    def int8_dot_product(self) -> bool:
        """Whether onnxruntime's int8 GEMM on this CPU uses a 32-bit dot-product instruction."""
        return self.isa in DOT_PRODUCT_CLASSES

    def describe(self) -> str:
        shown = sorted(self.flags & _SHOWN)
        flags = " ".join(shown) or "no SIMD flags read"
        return f"{self.model} ({self.machine}; int8 class {self.isa}; {flags})"


_SHOWN = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile",
                    "amx_int8", "avx512_bf16", "asimd", "asimddp", "sve", "i8mm"})


def classify(machine: str, flags: Iterable[str]) -> IsaClass:
    """The int8 kernel class onnxruntime's MLAS picks for these features."""
    have = {f.lower() for f in flags}
    arch = machine.lower()
    if arch in ("x86_64", "amd64", "x64", "i686", "i386"):
        if {"amx_tile", "amx_int8"} <= have:
            return "amx"
        if {"avx512bw", "avx512_vnni"} <= have:
            return "avx512_vnni"
        if "avx_vnni" in have:
            return "avx_vnni"
        if "avx512bw" in have:
            return "avx512"
        if "avx2" in have:
            return "avx2"
        return "x86_64"
    if arch in ("aarch64", "arm64", "armv8l"):
        return "arm64_dotprod" if "asimddp" in have else "arm64"
    return "other"


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """Read once per process: the CPU does not change under a running program."""
    machine = platform.machine() or "unknown"
    model, flags = _from_proc_cpuinfo(Path("/proc/cpuinfo"))
    if not flags:
        flags = _from_numpy()
    return CpuInfo(model or platform.processor() or "unknown CPU", machine, frozenset(flags),
                   classify(machine, flags))


def _from_proc_cpuinfo(path: Path) -> tuple[str, set[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", set()
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 says flags, ARM says Features
            flags = set(value.split())
        if model and flags:
            break
    return model, flags


# numpy's names for the features that decide the class, mapped to /proc/cpuinfo's spelling.
_NUMPY_NAMES = {"AVX2": "avx2", "AVX512BW": "avx512bw", "AVX512VNNI": "avx512_vnni",
                "AVX512F": "avx512f", "FMA3": "fma", "ASIMD": "asimd", "ASIMDDP": "asimddp"}


def _from_numpy() -> set[str]:
    # A private table, but the one numpy itself reports in `numpy.show_runtime()`; numpy < 2
    # keeps it under numpy.core.
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            features = importlib.import_module(module).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return {ours for theirs, ours in _NUMPY_NAMES.items() if features.get(theirs)}
    return set()
