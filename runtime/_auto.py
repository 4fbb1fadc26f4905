"""How `precision="auto"` picks a variant: by what was measured on this kind of CPU.

On CUDA: fp16, else fp32. On the CPU the choice is between int8 and fp32, and the right answer
depends on the CPU: int8 is far faster than fp32 where onnxruntime's int8 GEMM has a 32-bit
dot-product instruction (VNNI, AMX, ARM's `sdot`), and can be slower where it has not (AVX2).

1. If the bundle holds measurements of both variants on this CPU's int8 class (written by the
   export, or by `fusembed doctor --record` on a machine of that class), the faster one is used,
   unless int8's quality measured there fell below what the export accepted.
2. Otherwise int8 is used on dot-product classes, and on AVX2 where the int8 scheme is
   `w8a8-rowwise-pairsum` (built for AVX2's 16-bit pair sums, and measured faster than fp32
   there); fp32 elsewhere, because that is where onnxruntime's kernels put the speed.
   `fusembed doctor BUNDLE --record` on such a machine measures both and stores the result, after
   which rule 1 applies.

int8 schemes whose integer sums can overflow 16 bits (8-bit weights against u8 activations) give
other vectors on CPUs without a dot-product instruction, so there they are never picked.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._cpu import CpuInfo
from ._manifest import Manifest, Measurement, Variant

# Schemes whose u8 x s8 products are added pairwise in 16 bits on AVX2 and can saturate there:
# exact only where the int8 GEMM accumulates in 32 bits (dot-product classes).
SATURATING_SCHEMES = frozenset({"w8a8-static", "w8a8-static-ffn2-fp32", "w8a8-rowwise"})
# How far int8's min cosine on the check texts may fall on another CPU class before `auto`
# stops trusting it there: its integer arithmetic is exact on every class, so any real drop
# means the kernels differ (an old saturating bundle), not rounding.
QUALITY_SLACK = 0.002
# Classes without a dot-product instruction where the `w8a8-rowwise-pairsum` int8 was measured
# faster than fp32 (AVX2's u8 x s8 kernels, which the scheme's weights never saturate): 1.25-1.30x
# on all-MiniLM-L6-v2 and 1.57-1.64x on a BERT-base at batch 32 on a Zen 3 EPYC
# (benchmarks/results/avx2/compare.md). `avx512` without VNNI runs the same kernels twice as wide,
# but has not been measured, so it keeps fp32 until measured.
PAIRSUM_FAST_CLASSES = frozenset({"avx2"})


@dataclass(frozen=True)
class Choice:
    """The variant `auto` picked, and why, in a sentence a user can act on."""

    name: str
    reason: str


def choose_auto(manifest: Manifest, device: str, cpu: CpuInfo) -> Choice:
    variants = manifest.variants
    if device == "cuda":
        for name in ("fp16", "fp32"):
            if name in variants:
                return Choice(name, f"{name} is the fastest variant this bundle has for CUDA")
        raise LookupError("no variant usable on cuda")
    if "int8" not in variants or "fp32" not in variants:
        for name in ("int8", "fp32"):
            if name in variants:
                return Choice(name, f"the only CPU variant in this bundle is {name}")
        raise LookupError("no variant usable on the CPU")
    int8, fp32 = variants["int8"], variants["fp32"]
    if int8.scheme in SATURATING_SCHEMES and not cpu.int8_dot_product:
        return Choice("fp32", f"the int8 variant's scheme {int8.scheme} saturates in onnxruntime's "
                              f"{cpu.isa} kernels (its vectors would differ from the ones measured "
                              "at export); re-export with this fusembed for an int8 that is exact here")
    m8, m32 = latest(int8, cpu.isa), latest(fp32, cpu.isa)
    if m8 is not None and m32 is not None:
        floor = (int8.quality.min_cosine if int8.quality else m8.min_cosine) - QUALITY_SLACK
        if m8.min_cosine < floor:
            return Choice("fp32", f"int8 measured min cosine {m8.min_cosine:.5f} on {cpu.isa} "
                                  f"({m8.by}), below the {floor + QUALITY_SLACK:.5f} it had at export")
        ratio = m8.sentences_per_s / m32.sentences_per_s
        name = "int8" if ratio > 1.0 else "fp32"
        return Choice(name, f"measured on {cpu.isa} ({m8.cpu}, {m8.threads} threads, {m8.by}): "
                            f"int8 {m8.sentences_per_s:.0f} vs fp32 {m32.sentences_per_s:.0f} sentences/s")
    if int8.scheme.startswith("w8-blockwise"):
        return Choice("fp32", f"not measured on {cpu.isa}; how the {int8.scheme} int8 scheme compares "
                              "with fp32 differs between CPU classes (from slower to 1.5x faster), so "
                              "fp32 until measured (`fusembed doctor --record` measures this machine)")
    if cpu.int8_dot_product:
        return Choice("int8", f"not measured on {cpu.isa}; int8 GEMMs have a dot-product instruction "
                              "here, where they run faster than fp32 (`fusembed doctor --record` "
                              "measures this machine)")
    if int8.scheme == "w8a8-rowwise-pairsum" and cpu.isa in PAIRSUM_FAST_CLASSES:
        return Choice("int8", f"not measured on {cpu.isa}; the {int8.scheme} int8 gives the same sums "
                              f"with {cpu.isa}'s int8 kernels and ran 1.25-1.64x fp32 on an AVX2 CPU "
                              "(`fusembed doctor --record` measures this machine)")
    return Choice("fp32", f"not measured on {cpu.isa}; without an int8 dot-product instruction "
                          "onnxruntime's int8 kernels can be slower than fp32 "
                          "(`fusembed doctor --record` measures this machine)")


def latest(variant: Variant, isa: str) -> Measurement | None:
    """The variant's most recent measurement on CPUs of class `isa`, if any."""
    found = [m for m in variant.measurements if m.isa == isa]
    return found[-1] if found else None
