"""`precision="auto"` on the CPU: the CPU's int8 class is read correctly, and the variant is the
one measured faster on that class, or the one onnxruntime's kernels favour there when the bundle
was never measured on it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fusembed import BundleError, Encoder, read_manifest
from fusembed._auto import choose_auto
from fusembed._cpu import CpuInfo, _from_proc_cpuinfo, classify, cpu_info
from fusembed._manifest import Manifest, Measurement, Quality

from tests.bundles import edit_manifest


@pytest.mark.parametrize(
    ("machine", "flags", "isa"),
    [
        ("x86_64", "fma avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8", "amx"),
        ("x86_64", "fma avx2 avx512f avx512bw avx512_vnni", "avx512_vnni"),
        ("x86_64", "fma avx2 avx_vnni", "avx_vnni"),  # Alder Lake and later client CPUs
        ("x86_64", "fma avx2 avx512f avx512bw", "avx512"),  # Skylake-SP: no VNNI
        ("x86_64", "fma avx2", "avx2"),
        ("AMD64", "sse4_2", "x86_64"),
        ("aarch64", "fp asimd asimddp", "arm64_dotprod"),
        ("arm64", "fp asimd", "arm64"),
        ("riscv64", "", "other"),
    ],
)
def test_int8_class_of_each_cpu(machine: str, flags: str, isa: str) -> None:
    assert classify(machine, flags.split()) == isa


def test_proc_cpuinfo_is_read_on_x86_and_arm(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n\n"
                   "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n")
    assert _from_proc_cpuinfo(x86) == ("AMD EPYC 7B13", {"fpu", "avx2", "fma"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0c\n")
    assert _from_proc_cpuinfo(arm) == ("", {"fp", "asimd", "asimddp"})
    assert _from_proc_cpuinfo(tmp_path / "missing") == ("", set())


def test_this_cpu_is_classified() -> None:
    cpu = cpu_info()
    assert cpu.isa == classify(cpu.machine, cpu.flags)
    assert cpu.isa in cpu.describe()


def cpu(isa: str) -> CpuInfo:
    return CpuInfo("Test CPU", "x86_64", frozenset(), isa)  # type: ignore[arg-type]


def measured(manifest: Manifest, isa: str, int8_speed: float, fp32_speed: float,
             int8_min_cosine: float = 0.995) -> Manifest:
    def m(speed: float, min_cos: float) -> Measurement:
        return Measurement(isa=isa, cpu="Test CPU", threads=2, sentences_per_s=speed, batch1_ms=1.0,
                           mean_cosine=min_cos, min_cosine=min_cos, by="doctor (test)")

    v = dict(manifest.variants)
    v["int8"] = replace(v["int8"], measurements=(m(int8_speed, int8_min_cosine),))
    v["fp32"] = replace(v["fp32"], measurements=(m(fp32_speed, 1.0),))
    return replace(manifest, variants=v)


@pytest.fixture(scope="module")
def manifest(minilm_bundle: Path) -> Manifest:
    """The real bundle's manifest with its int8 (the first scheme the export tries) quality as
    exported and no measurements."""
    m = read_manifest(minilm_bundle)
    v = {n: replace(x, measurements=()) for n, x in m.variants.items()}
    v["int8"] = replace(v["int8"], scheme="w8a8-rowwise-pairsum",
                        quality=Quality(1000, 0.998, 0.995, 0.95, 1.0))
    return replace(m, variants=v)


def test_measured_faster_variant_wins(manifest: Manifest) -> None:
    fast = choose_auto(measured(manifest, "avx2", 500, 300), "cpu", cpu("avx2"))
    assert fast.name == "int8" and "int8 500 vs fp32 300" in fast.reason
    slow = choose_auto(measured(manifest, "avx2", 200, 300), "cpu", cpu("avx2"))
    assert slow.name == "fp32" and "int8 200 vs fp32 300" in slow.reason


def test_measurements_of_another_class_do_not_count(manifest: Manifest) -> None:
    on_vnni = measured(manifest, "avx512_vnni", 800, 1500)  # int8 slower there: fp32
    assert choose_auto(on_vnni, "cpu", cpu("avx512_vnni")).name == "fp32"
    elsewhere = choose_auto(on_vnni, "cpu", cpu("avx2"))  # rule 2 on AVX2, whatever VNNI measured
    assert elsewhere.name == "int8" and "not measured on avx2" in elsewhere.reason
    assert choose_auto(on_vnni, "cpu", cpu("arm64")).name == "fp32"


@pytest.mark.parametrize(("isa", "name"), [("amx", "int8"), ("avx512_vnni", "int8"), ("avx_vnni", "int8"),
                                           ("arm64_dotprod", "int8"), ("avx2", "int8"), ("avx512", "fp32"),
                                           ("x86_64", "fp32"), ("arm64", "fp32")])
def test_unmeasured_class_follows_the_kernels(manifest: Manifest, isa: str, name: str) -> None:
    """int8 where onnxruntime's int8 GEMMs were measured faster than fp32 with this scheme: the
    dot-product classes, and AVX2 for w8a8-rowwise-pairsum; fp32 where that is unmeasured."""
    choice = choose_auto(manifest, "cpu", cpu(isa))
    assert choice.name == name
    assert "fusembed doctor --record" in choice.reason


def test_int8_that_lost_quality_on_this_class_is_not_used(manifest: Manifest) -> None:
    drifted = measured(manifest, "avx2", 900, 300, int8_min_cosine=0.982)  # saturating kernels
    choice = choose_auto(drifted, "cpu", cpu("avx2"))
    assert choice.name == "fp32" and "0.98200" in choice.reason


def test_a_saturating_scheme_is_never_used_without_dot_products(manifest: Manifest) -> None:
    v = dict(manifest.variants)
    v["int8"] = replace(v["int8"], scheme="w8a8-rowwise")  # bundles of older fusembed releases
    old = measured(replace(manifest, variants=v), "avx2", 900, 300)
    choice = choose_auto(old, "cpu", cpu("avx2"))
    assert choice.name == "fp32" and "saturates" in choice.reason
    assert choose_auto(old, "cpu", cpu("avx512_vnni")).name == "int8"


@pytest.mark.parametrize("scheme", ["w8-blockwise-128", "w8-blockwise-32", "w8-blockwise"])
def test_blockwise_needs_a_measurement(manifest: Manifest, scheme: str) -> None:
    """Every block length, and the name older bundles gave blocks of 32."""
    v = dict(manifest.variants)
    v["int8"] = replace(v["int8"], scheme=scheme)
    blockwise = replace(manifest, variants=v)
    unmeasured = choose_auto(blockwise, "cpu", cpu("avx512_vnni"))
    assert unmeasured.name == "fp32" and scheme in unmeasured.reason
    assert choose_auto(blockwise, "cpu", cpu("avx2")).name == "fp32"
    assert choose_auto(measured(blockwise, "avx512_vnni", 900, 800), "cpu", cpu("avx512_vnni")).name == "int8"


def test_cuda_and_single_variant_bundles(manifest: Manifest) -> None:
    assert choose_auto(manifest, "cuda", cpu("avx2")).name == "fp16"
    only_fp32 = replace(manifest, variants={"fp32": manifest.variants["fp32"]})
    assert choose_auto(only_fp32, "cpu", cpu("amx")).name == "fp32"
    assert choose_auto(only_fp32, "cuda", cpu("amx")).name == "fp32"
    with pytest.raises(LookupError):
        choose_auto(replace(manifest, variants={"fp16": manifest.variants["fp16"]}), "cpu", cpu("avx2"))


@pytest.mark.parametrize(("measurements", "message"), [
    ("fast", "'measurements' has the wrong type"),
    (["fast"], "a measurement is not an object"),
    ([{"isa": "avx2"}], "'cpu' is missing"),
])
def test_malformed_measurements_are_a_bundle_error(tiny_bundle: Path, tmp_path: Path,
                                                   measurements: object, message: str) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    edit_manifest(bundle, lambda d: d["variants"]["fp32"].update(measurements=measurements))
    with pytest.raises(BundleError, match=message):
        Encoder(bundle)


def test_encoder_says_what_auto_chose_and_why(minilm_bundle: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(minilm_bundle, bundle)

    def slower_int8_on_avx2(data: dict[str, Any]) -> None:
        for name, speed in (("int8", 100.0), ("fp32", 250.0)):
            data["variants"][name]["measurements"] = [{
                "isa": "avx2", "cpu": "Test CPU", "threads": 2, "sentences_per_s": speed,
                "batch1_ms": 1.0, "mean_cosine": 0.999, "min_cosine": 0.999, "by": "doctor (test)"}]

    edit_manifest(bundle, slower_int8_on_avx2)
    import fusembed._encoder

    monkeypatch.setattr(fusembed._encoder, "cpu_info", lambda: cpu("avx2"))
    enc = Encoder(bundle)
    assert enc.precision == "fp32"
    assert "int8 100 vs fp32 250" in enc.choice.reason
    monkeypatch.setattr(fusembed._encoder, "cpu_info", lambda: cpu("avx512_vnni"))
    assert Encoder(bundle).precision == read_manifest(minilm_bundle).variants["int8"].precision
    assert Encoder(bundle, precision="fp32").choice.reason == "asked for"
