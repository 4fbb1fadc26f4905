"""Does a bundle compute the same embeddings on every CPU? Native against emulated AVX2 and ARM64.

fusembed's int8 scheme (`w8a8-rowwise-pairsum`, export/rowwise.py) bounds its weights so that
onnxruntime's int8 GEMMs give the same integers on AVX2 (whose u8 x s8 kernel adds pairs of
products in 16 bits with saturation), AVX-512 VNNI, AMX and ARM64; only the float parts (layer
norms, softmax, GELU, the scales) may round differently. This script checks that on a real bundle.

It tokenizes the bundle's check texts with the bundle's tokenizer, one text per run (no padding),
and runs each variant's graph with tests/export/run_onnx.py (numpy + onnxruntime only) on:

- this CPU, natively;
- on a CPU with AMX, this CPU again with AMX refused: onnxruntime asks Linux for the AMX tile state
  (arch_prctl ARCH_REQ_XCOMP_PERM) and, refused, uses its AVX-512 VNNI kernels; `strace` injects
  the refusal and its log shows that the run asked and was refused;
- an AVX2-only x86-64 CPU: this same Python under `qemu-x86_64 -cpu Haswell-noTSX`;
- ARM64: an aarch64 Python under qemu-aarch64 (e.g. /work/arm64/python), once per `--arm64-cpu`.

Per CPU and variant it reports mean and min cosine against the sentence-transformers (torch fp32)
embeddings stored in the bundle's check.json, and min cosine and max |diff| against the native run
of the same variant: the cross-CPU agreement. Emulation is slow (x40-200), so `--emulated-texts`
runs only the first N check texts there.

    .venv/bin/python benchmarks/cross_isa.py bundles/all-MiniLM-L6-v2 \\
        [--variants int8 fp32] [--texts N] [--emulated-texts 24] [--no-amx-off] [--no-avx2] \\
        [--arm64-python /work/arm64/python | --no-arm64] [--arm64-cpu max --arm64-cpu neoverse-n1] \\
        [--output benchmarks/results/cross_isa]

Writes OUTPUT.md (a table and how it was made) and OUTPUT.json (every number).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from fusembed import Encoder, cpu_info, read_manifest
from harness import isa_class
from vectors import row_cosine

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "export" / "run_onnx.py"
# The bar for "the same" that tests/export/test_int8_every_cpu.py sets for int8 on AVX2; the fp32
# graph, whose kernels differ across these CPUs in rounding only, stays within 1e-8 of 1.
SAME = 0.99999
_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8",
                    "asimd", "asimddp", "sve", "i8mm"})

# Run by the target's own Python: what the (emulated) CPU says it has. /proc/cpuinfo cannot be
# trusted under qemu-user (x86 guests read the host's; the arm64 root fakes a Neoverse-N1), so
# this asks numpy's CPUID/HWCAP table, and reads HWCAP/HWCAP2 for the ARM features numpy omits.
_PROBE = r"""
import json, platform, struct
import onnxruntime
try:
    from numpy._core._multiarray_umath import __cpu_features__ as f
except ImportError:
    from numpy.core._multiarray_umath import __cpu_features__ as f
names = {"AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
         "AVX512VNNI": "avx512_vnni", "ASIMD": "asimd", "ASIMDDP": "asimddp", "SVE": "sve"}
flags = {ours for theirs, ours in names.items() if f.get(theirs)}
if platform.machine() == "aarch64":
    aux = open("/proc/self/auxv", "rb").read()
    aux = dict(struct.unpack_from("QQ", aux, i) for i in range(0, len(aux) - 15, 16))
    if aux.get(26, 0) >> 13 & 1:  # AT_HWCAP2, HWCAP2_I8MM: the smmla/ummla kernels
        flags.add("i8mm")
print(json.dumps({"machine": platform.machine(), "flags": sorted(flags),
                  "onnxruntime": onnxruntime.__version__}))
"""


@dataclass(frozen=True)
class Target:
    name: str
    prefix: list[str]  # the command that runs a Python script on this CPU
    env: dict[str, str]
    emulator: str  # how it runs, in words ("" for native)
    emulated: bool = True  # slow: runs only --emulated-texts
    check: Callable[[], None] | None = None  # after each run: raises if it did not run as named


@dataclass
class Row:
    cpu: str
    int8_class: str
    variant: str
    texts: int
    seconds: float
    mean_cos_torch: float
    min_cos_torch: float
    min_cos_native: float | None
    max_abs_diff_native: float | None
    below: int | None  # texts whose cosine against the native run is under SAME
    cos_native: list[float] | None  # per text, in check-file order

    def line(self) -> str:
        vs = "" if self.min_cos_native is None else \
            (f"; vs native min {self.min_cos_native:.8f} max|diff| {self.max_abs_diff_native:.1e}, "
             f"{self.below} texts < {SAME}")
        return (f"{self.cpu:>28} {self.variant:>5}: {self.texts} texts in {self.seconds:7.1f} s; cosine vs "
                f"torch mean {self.mean_cos_torch:.6f} min {self.min_cos_torch:.6f}{vs}")


def compare(target: Target, cpu_class: str, variant: str, seconds: float, emb: np.ndarray,
            reference: np.ndarray, native: np.ndarray) -> Row:
    cos_torch = row_cosine(emb, reference)
    if target.name == "native":
        return Row(target.name, cpu_class, variant, len(emb), round(seconds, 1), float(cos_torch.mean()),
                   float(cos_torch.min()), None, None, None, None)
    cos = row_cosine(emb, native)
    return Row(target.name, cpu_class, variant, len(emb), round(seconds, 1), float(cos_torch.mean()),
               float(cos_torch.min()), float(cos.min()), float(np.abs(emb - native).max()),
               int((cos < SAME).sum()), [round(float(c), 10) for c in cos])


def build_feeds(bundle: Path, texts: list[str], inputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One run per text, named as run_onnx.py reads them: `<input>.<n>`."""
    rows = Encoder(bundle, precision="fp32").tokenize(texts)  # what users run, truncation included
    feeds = {}
    for n, row in enumerate(rows):
        ids = np.asarray([row], np.int64)
        arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for name in inputs:
            if name not in arrays:
                raise SystemExit(f"manifest input {name!r} is not one this benchmark knows how to feed")
            feeds[f"{name}.{n}"] = arrays[name]
    return feeds


def subset(feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: v for k, v in feeds.items() if int(k.rsplit(".", 1)[1]) < n}


def run(target: Target, script: list[str], timeout: float) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **target.env}
    done = subprocess.run([*target.prefix, *script], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{target.name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    if target.check is not None:
        target.check()
    return done.stdout


def amx_refusing(strace: str, log: Path) -> Target:
    """This CPU, with onnxruntime's request for the AMX tile state refused: the process's second
    arch_prctl (after the loader's ARCH_SET_FS) is that request; `check` confirms it from the log."""
    return Target("avx512_vnni (AMX refused)",
                  [strace, "-f", "-qq", "-o", str(log), "-e", "trace=arch_prctl",
                   "-e", "inject=arch_prctl:error=EPERM:when=2", sys.executable], {},
                  "this CPU with onnxruntime's request for AMX refused "
                  "(`strace -e inject=arch_prctl:error=EPERM:when=2`), so that it uses its "
                  "AVX-512 VNNI kernels", emulated=False, check=amx_refused(log))


def amx_refused(log: Path) -> Callable[[], None]:
    """A check that the traced run asked for AMX and was refused, and was never granted it."""
    def check() -> None:
        asks = [line for line in log.read_text().splitlines() if "ARCH_REQ_XCOMP_PERM" in line]
        if not asks or any("INJECTED" not in line for line in asks):
            raise SystemExit(f"AMX off: expected onnxruntime's request for AMX to be refused, the trace "
                             f"shows {asks or 'no request'}; strace's `when=2` no longer hits it")
    return check


def probe(target: Target, tmp: Path) -> dict[str, Any]:
    script = tmp / "probe.py"
    script.write_text(_PROBE)
    info: dict[str, Any] = json.loads(run(target, [str(script)], 300).strip().splitlines()[-1])
    info["int8_class"] = isa_class(info["machine"], info["flags"])
    return info


def embed(target: Target, model: Path, inputs: Path, out: Path, timeout: float) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    run(target, [str(RUNNER), str(model), str(inputs), str(out)], timeout)
    seconds = time.perf_counter() - start
    with np.load(out) as arrays:
        keys = sorted(arrays.files, key=lambda k: int(k.split(".")[1]))
        return np.concatenate([arrays[k] for k in keys]), seconds


def targets(args: argparse.Namespace, tmp: Path) -> list[Target]:
    found = [Target("native", [sys.executable], {}, "", emulated=False)]
    if args.amx_off and cpu_info().isa == "amx":
        strace = shutil.which("strace")
        if strace is None:
            raise SystemExit("--amx-off needs strace (apt-get install strace); or pass --no-amx-off")
        found.append(amx_refusing(strace, tmp / "amx-off.strace"))
    if args.avx2:
        qemu = shutil.which(args.qemu_x86)
        if qemu is None or platform.machine() not in ("x86_64", "AMD64"):
            raise SystemExit(f"--avx2 needs an x86-64 host and {args.qemu_x86!r} "
                             "(apt-get install qemu-user); or pass --no-avx2")
        version = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
        found.append(Target("avx2 (emulated)", [qemu, "-cpu", "Haswell-noTSX", sys.executable], {},
                            f"`{qemu} -cpu Haswell-noTSX` ({version.stdout.splitlines()[0]})"))
    if args.arm64_python:
        python = Path(args.arm64_python)
        if not python.exists():
            raise SystemExit(f"--arm64-python {python} does not exist; pass --no-arm64 to skip ARM64")
        for cpu in args.arm64_cpu or ["max"]:
            found.append(Target(f"arm64 {cpu} (emulated)", [str(python)], {"QEMU_CPU": cpu},
                                f"`QEMU_CPU={cpu} {python}` (an aarch64 Python under qemu-aarch64)"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--variants", nargs="+", default=["int8", "fp32"], help="default: int8 fp32")
    parser.add_argument("--texts", type=int, default=None, help="check texts to run natively (default: all)")
    parser.add_argument("--emulated-texts", type=int, default=None,
                        help="the first N of those to run under emulation (default: the same as --texts)")
    parser.add_argument("--avx2", action=argparse.BooleanOptionalAction, default=True,
                        help="run under qemu-x86_64 -cpu Haswell-noTSX (default: on)")
    parser.add_argument("--amx-off", action=argparse.BooleanOptionalAction, default=True,
                        help="on a CPU with AMX, also run with AMX refused: AVX-512 VNNI (default: on)")
    parser.add_argument("--qemu-x86", default="qemu-x86_64", help="the qemu-user x86-64 binary")
    parser.add_argument("--arm64-python", default="/work/arm64/python",
                        help="an aarch64 Python with numpy + onnxruntime (default: /work/arm64/python)")
    parser.add_argument("--no-arm64", dest="arm64_python", action="store_const", const=None)
    parser.add_argument("--arm64-cpu", action="append",
                        help="QEMU_CPU for the ARM64 runs, repeatable (default: max, which has dotprod, "
                             "i8mm and SVE; neoverse-n1 has dotprod only)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run (default: 3600)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "cross_isa",
                        help="writes OUTPUT.md and OUTPUT.json (default: benchmarks/results/cross_isa)")
    args = parser.parse_args()

    bundle = args.bundle.resolve()
    manifest = read_manifest(bundle)
    for variant in args.variants:
        if variant not in manifest.variants:
            raise SystemExit(f"bundle has no {variant!r} variant; it has {sorted(manifest.variants)}")
    if not manifest.check:
        raise SystemExit(f"{bundle}: the manifest names no check file (re-export the bundle)")
    check = json.loads((bundle / manifest.check).read_text(encoding="utf-8"))
    n_all = len(check["texts"]) if args.texts is None else min(args.texts, len(check["texts"]))
    n_emu = n_all if args.emulated_texts is None else min(args.emulated_texts, n_all)
    texts = check["texts"][:n_all]
    reference = np.asarray(check["embeddings"][:n_all], np.float64)
    feeds = build_feeds(bundle, texts, manifest.inputs)
    lengths = [int(feeds[f"{manifest.inputs[0]}.{i}"].shape[1]) for i in range(n_all)]
    host = cpu_info()
    started = datetime.datetime.now(datetime.timezone.utc)

    rows: list[Row] = []
    probes: dict[str, dict[str, Any]] = {}
    native: dict[str, np.ndarray] = {}
    users: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cross_isa.") as tmp_name:  # under /tmp: the arm64 root sees it
        tmp = Path(tmp_name)
        inputs = {n_all: tmp / "inputs.npz", n_emu: tmp / f"inputs.{n_emu}.npz"}
        np.savez(inputs[n_all], allow_pickle=False, **feeds)
        np.savez(inputs[n_emu], allow_pickle=False, **subset(feeds, n_emu))
        for target in targets(args, tmp):
            info = probe(target, tmp)
            probes[target.name] = {**info, "emulator": target.emulator}
            n = n_emu if target.emulated else n_all
            cpu_class = host.isa if target.name == "native" else info["int8_class"]
            for variant in args.variants:
                model = bundle / manifest.variants[variant].file
                out = tmp / f"{variant}.{len(rows)}.npz"
                emb, seconds = embed(target, model, inputs[n], out, args.timeout)
                if target.name == "native":
                    native[variant] = emb
                    # The runner must run what users run: Encoder.encode of each text alone.
                    enc = Encoder(bundle, precision=variant)
                    users[variant] = float(np.abs(np.stack([enc.encode(t) for t in texts]) - emb).max())
                row = compare(target, cpu_class, variant, seconds, emb, reference[:n], native[variant][:n])
                rows.append(row)
                print(row.line(), flush=True)

    schemes = {v: manifest.variants[v].scheme for v in args.variants}
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    setup = {"command": shlex.join([python, *sys.argv]), "date": started.isoformat(timespec="seconds"),
             "reference": check.get("reference", "unknown"), "schemes": schemes, "token_lengths": lengths,
             "texts_native": n_all, "texts_emulated": n_emu, "runner_vs_encoder_max_abs_diff": users}
    write(args.output, setup, probes, rows)


def reading(rows: list[Row]) -> str:
    emulated = [r for r in rows if r.min_cos_native is not None]
    if not emulated:
        return "Only the native CPU ran: nothing to compare across CPUs."
    same = [r for r in emulated if (r.min_cos_native or 0.0) >= SAME]
    differ = [r for r in emulated if r not in same]

    def worst(group: list[Row]) -> str:
        low = min(r.min_cos_native or 0.0 for r in group)
        return f"min cosine {low:.8f}, max |diff| {max(r.max_abs_diff_native or 0.0 for r in group):.1e}"

    if not differ:
        return (f"Every variant agrees with the native run on every emulated CPU to {SAME} ({worst(same)}): "
                "float rounding only.")
    failed = "; ".join(f"{r.variant} on {r.cpu}: min cosine {r.min_cos_native:.6f}, max |diff| "
                       f"{r.max_abs_diff_native:.1e}, {r.below} of {r.texts} texts below" for r in differ)
    held = sorted({r.variant for r in same} - {r.variant for r in differ})
    return (f"NOT the same on every CPU: against the native run, {failed}"
            + (f"; {', '.join(held)} agrees everywhere ({worst(same)}), so the float kernels differ only "
               "in rounding and the variants above amplify that (in their integer GEMMs, or by "
               "re-quantising slightly different floats to different integers: this script cannot tell "
               "which)." if held else "."))


def write(output: Path, setup: dict[str, Any], probes: dict[str, dict[str, Any]], rows: list[Row]) -> None:
    host = cpu_info()
    flags = sorted(host.flags & _FLAGS)
    lengths, n_all, n_emu = setup["token_lengths"], setup["texts_native"], setup["texts_emulated"]
    lines = [
        "# Cross-CPU agreement of one bundle: native vs other int8 kernels, emulated AVX2 and ARM64",
        "",
        f"- command: `{setup['command']}`",
        f"- date: {setup['date']}",
        f"- host: {host.model} ({host.machine}; int8 class {host.isa}; {' '.join(flags)}); "
        f"python {platform.python_version()}; onnxruntime {onnxruntime.__version__}",
    ]
    for name, info in probes.items():
        if info["emulator"]:
            lines.append(f"- {name}: {info['emulator']}; it reports {info['machine']} with "
                         f"{' '.join(info['flags'])} (int8 class {info['int8_class']}); "
                         f"onnxruntime {info['onnxruntime']}")
    lines += [
        f"- texts: the bundle's check texts, one per run (no padding), {n_all} natively "
        f"({min(lengths)}-{max(lengths)} tokens)"
        + (f", the first {n_emu} under emulation ({min(lengths[:n_emu])}-{max(lengths[:n_emu])} tokens)"
           if n_emu < n_all else ", all of them under emulation"),
        f"- variants: {', '.join(f'{k} = {v}' for k, v in setup['schemes'].items())}",
        f"- torch: the check file's reference embeddings ({setup['reference']})",
        "- native runner vs `Encoder.encode` of each text alone: max |diff| "
        + ", ".join(f"{k} {v:.1e}" for k, v in setup["runner_vs_encoder_max_abs_diff"].items()),
        "- seconds: wall time of one run_onnx.py process (start-up, session creation, all texts)",
        "",
        f"| CPU | int8 class | variant | texts | seconds | cos vs torch, mean | min | cos vs native, min "
        f"| max \\|diff\\| vs native | texts < {SAME} vs native |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        vs = ("—", "—", "—") if r.min_cos_native is None else \
            (f"{r.min_cos_native:.8f}", f"{r.max_abs_diff_native:.1e}", str(r.below))
        lines.append(f"| {r.cpu} | {r.int8_class} | {r.variant} | {r.texts} | {r.seconds:.1f} | "
                     f"{r.mean_cos_torch:.6f} | {r.min_cos_torch:.6f} | {' | '.join(vs)} |")
    lines += ["", reading(rows), ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    host_json = {"cpu": host.model, "machine": host.machine, "int8_class": host.isa, "flags": flags,
                 "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}
    output.with_suffix(".json").write_text(json.dumps(
        {**setup, "host": host_json, "targets": probes, "same_threshold": SAME,
         "rows": [asdict(r) for r in rows], "reading": reading(rows)}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output.with_suffix('.md')} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
