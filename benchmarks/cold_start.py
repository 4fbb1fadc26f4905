"""Time to the first embedding and latency meanwhile, with the bucket shapes warmed at load, in the
background, or not at all (`Encoder(..., warmup=True | "background" | False)`).

    python benchmarks/cold_start.py BUNDLE --device cuda

Each run is a fresh Python process: import fusembed, build the encoder (bucketed shapes), then
`--calls` single-text calls on texts of every length, one after another, as a service that takes
traffic at once would see them; then it waits for the warm-up (if any) to end and makes the same
calls again. The modes take turns, `--rounds` times; the median of each figure is kept.
On the CPU the shapes are bucketed only for this measurement (`bucket_shapes=True`); the CPU
default leaves them raw and warms nothing. Writes cold_start.md and .json to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import command_line, long_texts, machine, percentiles, save_report, short_texts

RESULTS = Path(__file__).parent / "results"
MODES: dict[str, bool | str] = {"at load": True, "background": "background", "off": False}

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import fusembed
imported = time.perf_counter() - t0
bundle, device, mode, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
enc = fusembed.Encoder(bundle, device=device, bucket_shapes=True, warmup=mode)
loaded = time.perf_counter() - t0

def calls():
    ms = []
    for text in texts:
        began = time.perf_counter()
        enc.encode(text)
        ms.append((time.perf_counter() - began) * 1000)
    return ms

cold = calls()
first = loaded + cold[0] / 1000
during = enc.warming
enc.wait_warmup()
warm_s = time.perf_counter() - t0
print(json.dumps({"import_s": imported, "load_s": loaded, "first_s": first, "cold_ms": cold,
                  "warming_after_calls": during, "warm_s": warm_s, "warm_ms": calls()}))
"""


def mixed_texts(n: int) -> list[str]:
    """Short and long texts interleaved, so that single-text calls meet many widths."""
    short, long = short_texts(n, seed=21), long_texts(n, seed=22)
    return [short[i // 2] if i % 2 == 0 else long[i // 2] for i in range(n)]


def run_once(bundle: Path, device: str, mode: bool | str, texts: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(bundle), device, json.dumps(mode),
                           json.dumps(texts)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"warmup={mode!r} run failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over the rounds of each figure."""
    def med(figure: Callable[[dict[str, Any]], float]) -> float:
        return float(statistics.median(figure(r) for r in runs))

    return {
        "import_s": med(lambda r: r["import_s"]),
        "load_s": med(lambda r: r["load_s"]),
        "first_s": med(lambda r: r["first_s"]),
        "cold_p50_ms": med(lambda r: percentiles(r["cold_ms"], (50,))[0]),
        "cold_p99_ms": med(lambda r: percentiles(r["cold_ms"], (99,))[0]),
        "cold_max_ms": med(lambda r: max(r["cold_ms"])),
        "cold_total_s": med(lambda r: sum(r["cold_ms"]) / 1000),
        "warm_s": med(lambda r: r["warm_s"]),
        "warm_p50_ms": med(lambda r: percentiles(r["warm_ms"], (50,))[0]),
        "warm_p99_ms": med(lambda r: percentiles(r["warm_ms"], (99,))[0]),
        "warming_after_calls": sum(bool(r["warming_after_calls"]) for r in runs) / len(runs),
    }


def measure(bundle: Path, device: str, *, calls: int = 100, rounds: int = 3) -> dict[str, Any]:
    texts = mixed_texts(calls)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in MODES}
    for round_ in range(rounds):
        names = list(MODES)
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            runs[name].append(run_once(bundle, device, MODES[name], texts))
    return {"device": device, "calls": calls, "rounds": rounds,
            "modes": {name: summary(r) for name, r in runs.items()}}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Cold start with warm-up at load, in the background, or off ({report['device']})", "",
        f"`{report['command']}`", "",
        f"Machine: {m['cpu']} ({m['isa']}, {m['cores']} CPUs), onnxruntime {m['onnxruntime']}.", "",
        *table(report),
    ]
    return "\n".join(lines)


def table(measured: dict[str, Any]) -> list[str]:
    """`measure`'s figures as a markdown table, with what they mean."""
    lines = [
        f"A fresh process per run; {measured['calls']} single-text calls on short and long texts in "
        f"turn, from the moment the encoder is built; medians of {measured['rounds']} rounds.", "",
        "| warm-up | encoder built | first embedding | first calls p50 / p99 / worst | those calls, total "
        "| warm at | then p50 / p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in measured["modes"].items():
        lines.append(
            f"| {name} | {s['load_s']:.2f} s | {s['first_s']:.2f} s | {s['cold_p50_ms']:.2f} / "
            f"{s['cold_p99_ms']:.1f} / {s['cold_max_ms']:.1f} ms | {s['cold_total_s']:.2f} s | "
            f"{s['warm_s']:.2f} s | {s['warm_p50_ms']:.2f} / {s['warm_p99_ms']:.2f} ms |")
    lines += ["", "Times in s are from the start of the process (import included). \"warm at\": "
              "when the warm-up had ended, after the first calls.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--calls", type=int, default=100, help="single-text calls per run (default: 100)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode, in turn (default: 3)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.calls < 1 or args.rounds < 1:
        parser.error("--calls and --rounds must be at least 1")
    report = measure(args.bundle, args.device, calls=args.calls, rounds=args.rounds)
    here = machine()
    report["command"] = command_line()
    report["machine"] = {"cpu": here.cpu, "isa": here.isa, "cores": here.cores, "python": here.python,
                         "onnxruntime": here.onnxruntime}
    save_report(args.out, "cold_start", report, markdown(report))


if __name__ == "__main__":
    main()
