"""The int8 variant's integer GEMMs compute the same sums on every CPU.

onnxruntime's AVX2 int8 kernels add each pair of u8 x s8 products in 16 bits with saturation
(vpmaddubsw); VNNI, AMX and ARM's dot products do not saturate. fusembed's int8 schemes scale
weights so that no pair can exceed int16: `w8a8-rowwise-pairsum` keeps |w[2j]| + |w[2j+1]| <= 128
(255 * 128 = 32640), the static schemes keep weights in 7 bits (2 * 255 * 63 = 32130).

The AVX2-only CPU is Debian's `qemu-x86_64 -cpu Haswell` running this same Python: it executes
onnxruntime's AVX2 kernels exactly (slowly), whatever the host has. On an AVX2 host that is also
what the native run does. CI installs qemu-user and sets FUSEMBED_REQUIRE_QEMU=1, so there the
tests cannot be skipped.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fusembed import read_manifest
from fusembed._auto import SATURATING_SCHEMES
from fusembed._similarity import row_cosine
from fusembed.export.graph import IR_VERSION
from fusembed.export.rowwise import WeightRange, quantize_rowwise
from onnx import TensorProto, helper, numpy_helper

RUNNER = Path(__file__).with_name("run_onnx.py")
QEMU = shutil.which("qemu-x86_64")


@pytest.fixture(scope="module")
def haswell() -> list[str]:
    """The command prefix that runs this Python on an emulated AVX2-only CPU."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the AVX2 emulation runs x86-64 binaries")
    if QEMU is None:
        if os.environ.get("FUSEMBED_REQUIRE_QEMU") == "1":
            pytest.fail("FUSEMBED_REQUIRE_QEMU=1 but qemu-x86_64 is missing (apt-get install qemu-user)")
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user)")
    return [QEMU, "-cpu", "Haswell-noTSX"]


def run(model: Path, feeds: dict[str, np.ndarray], tmp: Path,
        prefix: list[str] | None = None) -> list[np.ndarray]:
    inputs, out = tmp / f"{model.stem}.in.npz", tmp / f"{model.stem}.{'emu' if prefix else 'native'}.npz"
    np.savez(inputs, **feeds)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([*(prefix or []), sys.executable, str(RUNNER), str(model), str(inputs), str(out)],
                          capture_output=True, text=True, timeout=900, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as arrays:
        return [arrays[k] for k in sorted(arrays.files, key=lambda k: int(k.split(".")[1]))]


K, N = 256, 64


def toy(tmp: Path, weights: WeightRange) -> tuple[Path, np.ndarray, dict[str, np.ndarray]]:
    """One rowwise GEMM whose inputs drive the u8 and s8 operands to their extremes: the case
    where 8-bit weights overflow 16 bits on AVX2. Returns the model, the exact result computed
    in integers by numpy, and the feeds."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((K, N)).astype(np.float32)
    w[:, : N // 2] = np.abs(w[:, : N // 2])  # same-signed columns: every pair adds up
    w[:, :8] = rng.uniform(2.0, 2.5, (K, 8))  # and columns of large weights: 8-bit pairs near 254
    # Large weights at every other row: pairs (2j, 2j+1) stay small, any other pairing would not.
    # This pins down which products the kernel adds in 16 bits.
    w[:, 8:12] = np.where((np.arange(K) % 2 == 0)[:, None], 2.5, 0.02)
    x = rng.standard_normal((2, 8, K)).astype(np.float32)
    x[0, :4] = np.abs(x[0, :4]) + 3.0  # rows near their max everywhere: u8 values near 255
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "toy",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "S"]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    quantize_rowwise(model, lambda names: {}, alpha=0.0, weight_range=weights)
    path = tmp / f"toy_{weights}.onnx"
    onnx.save(model, str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    wq = next(v for k, v in inits.items() if k.endswith("_w8")).astype(np.int64)
    w_scale = next(v for k, v in inits.items() if k.endswith("_w_scale")).astype(np.float64)
    rows = x.reshape(-1, K)
    r = (np.abs(rows).max(axis=1) * np.float32(1 / 127)).astype(np.float32)
    q = np.clip(np.rint(rows / r[:, None]) + 128, 0, 255).astype(np.int64) - 128
    exact = ((q @ wq) * w_scale[None, :] * r[:, None].astype(np.float64)).reshape(2, 8, N)
    return path, exact, {"input_ids": np.zeros((2, 8), np.int64), "x": x}


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("weights", ["pairsum", "7bit"])
def test_int16_safe_weights_give_the_exact_integers_on_avx2(
    weights: WeightRange, haswell: list[str], tmp_path: Path
) -> None:
    model, exact, feeds = toy(tmp_path, weights)
    native = run(model, feeds, tmp_path)[0]
    emulated = run(model, feeds, tmp_path, haswell)[0]
    assert relative(native, exact) < 1e-5
    assert relative(emulated, exact) < 1e-5


def test_eight_bit_weights_saturate_on_avx2(haswell: list[str], tmp_path: Path) -> None:
    """The control: the same check catches the saturation it exists for."""
    model, exact, feeds = toy(tmp_path, "8bit")
    emulated = run(model, feeds, tmp_path, haswell)[0]
    assert relative(emulated, exact) > 1e-2


def test_real_model_int8_keeps_its_quality_on_avx2(minilm_bundle: Path, haswell: list[str],
                                                    tmp_path: Path) -> None:
    """The shipped int8 graph of all-MiniLM-L6-v2 on an AVX2-only CPU against this CPU, both
    against sentence-transformers' fp32 embeddings of the bundle's check texts.

    The integer GEMMs are exact on both; the float parts (layer norms, softmax, GELU) use other
    kernels and round differently in the last bits, and where that moves an activation across a
    rounding boundary of its 8-bit grid, the quantised value differs by one step. So the vectors
    are close, not identical (min cosine to each other 0.9995 in benchmarks/results/cross_isa.md),
    and their quality against torch is the same: the quality gate measured at export holds. A
    saturating scheme loses 0.01 of min cosine here (0.993 -> 0.982 on a real AVX2 machine)."""
    from fusembed import Encoder

    manifest = read_manifest(minilm_bundle)
    int8 = manifest.variants["int8"]
    assert int8.scheme not in SATURATING_SCHEMES
    texts, reference, feeds = check_feeds(minilm_bundle, 12)
    enc = Encoder(minilm_bundle, precision="int8")
    model = minilm_bundle / int8.file
    native = np.concatenate(run(model, feeds, tmp_path))
    emulated = np.concatenate(run(model, feeds, tmp_path, haswell))
    np.testing.assert_allclose(native, enc.encode(texts), atol=1e-6)  # the runner runs what users run

    here, avx2 = row_cosine(native, reference), row_cosine(emulated, reference)
    assert row_cosine(native, emulated).min() >= 0.999
    assert abs(avx2.min() - here.min()) < 1e-3 and abs(avx2.mean() - here.mean()) < 2e-4
    assert avx2.min() >= 0.99  # the export's budget


def check_feeds(bundle: Path, n: int) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """The bundle's first `n` check texts, their sentence-transformers embeddings, and feeds for
    run_onnx.py: one text per run, so there is no padding to reason about."""
    from fusembed._doctor import CheckSet
    from fusembed._tokens import TextTokenizer

    manifest = read_manifest(bundle)
    check = CheckSet.read(bundle / manifest.check)
    texts = list(check.texts[:n])
    tokenizer = TextTokenizer(bundle / manifest.tokenizer, manifest.max_seq_length)
    feeds = {}
    for i, text in enumerate(texts):
        ids = np.asarray([tokenizer.row(text)], np.int64)
        feeds[f"input_ids.{i}"] = ids
        feeds[f"attention_mask.{i}"] = np.ones_like(ids)
        feeds[f"token_type_ids.{i}"] = np.zeros_like(ids)
    return texts, check.embeddings[:n], feeds


def blockwise(tiny_bundle: Path, tmp: Path, block: int) -> tuple[Path, dict[str, np.ndarray]]:
    """The tiny bundle's fp32 graph as `w8-blockwise-<block>`, and a padded batch of 12 texts."""
    from fusembed.export import quantize
    from fusembed.export.texts import varied_texts
    from tokenizers import Tokenizer

    manifest = read_manifest(tiny_bundle)
    tokenizer = Tokenizer.from_file(str(tiny_bundle / manifest.tokenizer))
    rows = [e.ids for e in tokenizer.encode_batch(varied_texts(12, seed=8))]
    width = max(map(len, rows)) + max(map(len, rows)) % 2  # an even width, as the runtime gives it
    ids = np.full((len(rows), width), manifest.pad_token_id, np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    path = tmp / f"b{block}.onnx"
    quantize._w8_blockwise(tiny_bundle / manifest.variants["fp32"].file, path, block_size=block)
    return path, {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("block", [128, 32])
def test_blockwise_schemes_give_the_same_vectors_on_avx2(tiny_bundle: Path, haswell: list[str],
                                                         tmp_path: Path, block: int) -> None:
    """MatMulNBits multiplies s8 by s8 (|a| x |b| <= 127 x 128: no pair reaches int16), so the
    blockwise int8 graphs give AVX2 the sums of the native kernels; only float rounding differs."""
    path, feeds = blockwise(tiny_bundle, tmp_path, block)
    native = run(path, feeds, tmp_path)[0]
    emulated = run(path, feeds, tmp_path, haswell)[0]
    assert float(row_cosine(native, emulated).min()) >= 0.9999


@pytest.fixture(scope="module")
def amx_off(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """On a CPU with AMX: the command prefix (and its check) that runs this Python with
    onnxruntime's request for AMX refused, so that it uses its AVX-512 VNNI int8 kernels."""
    from fusembed import cpu_info

    strace = shutil.which("strace")
    if cpu_info().isa != "amx" or strace is None:
        pytest.skip("needs a CPU with AMX, and strace")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import cross_isa

    target = cross_isa.amx_refusing(strace, tmp_path_factory.mktemp("amx") / "trace")
    assert target.prefix[-1] == sys.executable  # run() adds it
    return target


def test_real_model_int8_is_the_same_with_amx_and_vnni(minilm_bundle: Path, amx_off: Any,
                                                        tmp_path: Path) -> None:
    """AMX and AVX-512 VNNI both sum u8 x s8 products in 32 bits, and every float kernel is the
    same on one CPU: the shipped int8 graph gives the same vectors with and without AMX."""
    _, _, feeds = check_feeds(minilm_bundle, 12)
    model = minilm_bundle / read_manifest(minilm_bundle).variants["int8"].file
    native = np.concatenate(run(model, feeds, tmp_path))
    vnni = np.concatenate(run(model, feeds, tmp_path, amx_off.prefix[:-1]))
    amx_off.check()  # the run asked for AMX and was refused
    np.testing.assert_allclose(vnni, native, atol=1e-6)


@pytest.mark.parametrize("block", [128, 32])
def test_blockwise_schemes_are_the_same_with_amx_and_vnni(tiny_bundle: Path, amx_off: Any,
                                                          tmp_path: Path, block: int) -> None:
    path, feeds = blockwise(tiny_bundle, tmp_path, block)
    native = run(path, feeds, tmp_path)[0]
    vnni = run(path, feeds, tmp_path, amx_off.prefix[:-1])[0]
    amx_off.check()
    assert float(row_cosine(native, vnni).min()) >= 0.99999
