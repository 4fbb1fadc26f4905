"""`fusembed embed-corpus` at scale: throughput and peak memory of the streaming CLI (10k, 100k
and 200k short documents, to show memory does not grow with the corpus) and of `--ray` with two
workers (100k documents).

    python benchmarks/corpus.py bundles/all-MiniLM-L6-v2

Writes benchmarks/results/corpus.md and corpus.json. Each run is a separate `fusembed
embed-corpus` process. Memory is the peak, sampled every 50 ms, of the summed RSS of that process
and all its descendants: for `--ray` that includes the local cluster it starts (GCS, raylet, the
worker actors), which is what the machine pays for.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import command_line, machine, rss_mb, short_texts

RESULTS = Path(__file__).parent / "results"


def tree_rss_mb(root: int) -> float:
    """Summed VmRSS of `root` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for pid in tree:
        try:
            total += rss_mb(pid)
        except OSError:  # it ended while we looked
            continue
    return total


def run(argv: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": peak, "summary": stderr.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--sizes", default="10000,100000,200000", help="corpus sizes for the streaming CLI")
    parser.add_argument("--ray-size", type=int, default=100_000, help="corpus size for the Ray run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cli = [sys.executable, "-m", "fusembed", "embed-corpus"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fusembed-corpus-") as tmp:
        texts = short_texts(max(*sizes, args.ray_size), seed=11)
        for n in sorted({*sizes, args.ray_size}):
            with open(f"{tmp}/docs-{n}.jsonl", "w") as fh:
                for i in range(n):
                    fh.write(json.dumps({"id": f"doc-{i}", "text": texts[i]}) + "\n")
        for n in sizes:
            result = run([*cli, f"{tmp}/docs-{n}.jsonl", f"{tmp}/out-cli-{n}", "--bundle", str(args.bundle),
                          "--id-field", "id", "--no-progress"])
            rows.append({"engine": "streaming CLI (1 process, 2 threads)", "docs": n, **result,
                         "docs_per_s": n / float(result["seconds"])})
        n = args.ray_size
        result = run([*cli, f"{tmp}/docs-{n}.jsonl", f"{tmp}/out-ray-{n}", "--bundle", str(args.bundle),
                      "--id-field", "id", "--ray", "--ray-workers", "2", "--ray-cpus-per-worker", "1"])
        rows.append({"engine": "--ray, 2 workers x 1 CPU (local cluster)", "docs": n, **result,
                     "docs_per_s": n / float(result["seconds"])})
    here = machine()
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": {"cpus": here.cores, "processor": here.cpu, "python": here.python},
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# `fusembed embed-corpus`: streaming CLI and Ray Data",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {here.cores} CPUs, {here.cpu}. Documents: short synthetic "
        "sentences (10-40 word pieces) in JSONL with ids. Wall time includes start-up (and, for Ray, "
        "starting the local cluster); memory is the peak summed RSS of the process tree.",
        "",
        "| engine | documents | seconds | documents/s | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['docs']:,} | {r['seconds']:.1f} | {r['docs_per_s']:,.0f} "
                     f"| {r['peak_rss_mb']:.0f} MB |")
    (args.out / "corpus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
