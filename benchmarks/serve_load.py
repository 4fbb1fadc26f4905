"""Load on `fusembed serve`, over loopback: correctness under concurrency, latency, throughput,
dynamic batching on against off, and memory over a soak.

    python benchmarks/serve_load.py bundles/all-MiniLM-L6-v2

Writes benchmarks/results/serve.md and serve.json. Each server is a separate `fusembed serve`
process; the clients run in this process on a bare asyncio HTTP/1.1 keep-alive client, because
httpx spent 1.2-2.7 ms of CPU per request here (0.06-0.27 ms for this one), and on two cores a
heavy client would be measured as server time. Expected vectors are computed with `Encoder`
before any server starts, so they do not compete for the CPU either.

Scenarios:
1. soak: 64 concurrent clients send `--soak` requests of 1-4 short texts each (base64, as the
   openai client asks), after `--warmup` requests. Every vector is checked against
   `Encoder.encode` of the same text (cosine); RSS of the server after warm-up, once a second
   during the soak (memory that levels off and memory that keeps growing differ there), and at
   the end.
2. batching: 32 concurrent clients, one text per request, the same requests against a server with
   batching on and one with `--no-batching`; throughput ratio. Also the model alone (no HTTP) at
   batch 1 and batch 32: the ratio batching can reach at best on this machine.

With `--workers 1,2` it runs only this instead, and writes serve-workers.md and .json:
3. workers: the same one-text requests from 32 clients against `fusembed serve --workers N` for
   each N, batching on and off, all servers up at once and taking turns round after round;
   requests/s and server CPU per request, the CPU summed over every process of the server (the
   model process and its HTTP workers), medians over rounds.

`--client-procs N` spreads the concurrent clients over N processes (forked; the requests are dealt
out round-robin): one asyncio client process tops out at a few thousand requests/s, below what a
GPU server answers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import multiprocessing
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fusembed import Encoder
from harness import (
    command_line,
    cpu_seconds,
    fusembed_commit,
    gpu_memory_mb,
    machine,
    pass_seconds,
    percentiles,
    rotated,
    rss_mb,
    save_report,
    short_texts,
)

RESULTS = Path(__file__).parent / "results"


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class LoadResult:
    clients: int
    requests: int
    texts: int
    errors: int
    seconds: float
    requests_per_s: float
    texts_per_s: float
    p50_ms: float
    p99_ms: float
    min_cosine: float | None


async def load_samples(
    port: int, model: str, requests: list[list[str]], clients: int, expected: dict[str, np.ndarray] | None
) -> tuple[list[float], int, float]:
    """Send `requests` (each a list of texts) from `clients` concurrent connections; return every
    request's latency (s), the number of errors and the worst cosine to `expected` (1.0 if None)."""
    latencies: list[float] = []
    errors = 0
    worst = 1.0
    pending = iter(requests)

    async def client() -> None:
        nonlocal errors, worst
        conn = await Connection.open(port)
        for texts in pending:
            body = json.dumps({"model": model, "input": texts, "encoding_format": "base64"}).encode()
            started = time.perf_counter()
            status, data = await conn.post("/v1/embeddings", body)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1
                continue
            if expected is not None:
                for item, text in zip(json.loads(data)["data"], texts, strict=True):
                    got = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                    want = expected[text]
                    worst = min(worst, float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want))))
        conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, worst


def _samples_in_process(port: int, model: str, requests: list[list[str]], clients: int,
                        expected: dict[str, np.ndarray] | None) -> tuple[list[float], int, float]:
    return asyncio.run(load_samples(port, model, requests, clients, expected))


async def load(
    port: int, model: str, requests: list[list[str]], clients: int, expected: dict[str, np.ndarray] | None,
    procs: int = 1,
) -> LoadResult:
    """Send `requests` (each a list of texts) from `clients` concurrent connections, spread over
    `procs` client processes: one Python process of asyncio clients tops out at a few thousand
    requests/s, below what a GPU server answers."""
    started = time.perf_counter()
    if procs == 1:
        latencies, errors, worst = await load_samples(port, model, requests, clients, expected)
    else:
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, 0.1) for _ in range(procs)))
            started = time.perf_counter()  # the client processes are up: time only the requests
            parts = await asyncio.gather(*(
                loop.run_in_executor(pool, _samples_in_process, port, model, requests[i::procs],
                                     clients // procs + (i < clients % procs), expected)
                for i in range(procs)))
        latencies = [s for part in parts for s in part[0]]
        errors, worst = sum(part[1] for part in parts), min(part[2] for part in parts)
    seconds = time.perf_counter() - started
    p50, p99 = percentiles([s * 1000 for s in latencies], (50, 99))
    texts = sum(map(len, requests))
    return LoadResult(
        clients,
        len(requests),
        texts,
        errors,
        seconds,
        len(requests) / seconds,
        texts / seconds,
        p50,
        p99,
        worst if expected is not None else None,
    )


class Server:
    """A `fusembed serve` process on a free loopback port."""

    def __init__(self, bundle: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fusembed", "serve", str(bundle), "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.proc.stderr.read()}") from None  # type: ignore[union-attr]
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def rss_mb(self) -> float:
        """Resident memory of the server process and every process under it (`--workers`; pages
        they share count once per process, which only matters for the sum, not its growth)."""
        return sum(rss_mb(pid) for pid in process_tree(self.proc.pid))

    def cpu_s(self) -> float:
        """User + system CPU seconds so far of the server process and every process under it
        (`--workers`), all their threads."""
        return sum(cpu_seconds(pid) for pid in process_tree(self.proc.pid))

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of /metrics (batch histograms' sums and counts)."""
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        text = raw.split(b"\r\n\r\n", 1)[1].decode()
        return {
            m.group(1): float(m.group(2)) for m in re.finditer(r"^(fusembed_\w+) ([\d.e+-]+)$", text, re.M)
        }

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


class RssTrace:
    """The server's RSS (and with `gpu`, the GPU's memory in use, from nvidia-smi) every
    `interval_s` while the block runs, from a thread (reading /proc costs the server nothing):
    whether memory levels off or keeps growing shows in the trace, not in its two ends alone."""

    def __init__(self, server: Server, interval_s: float = 1.0, *, gpu: bool = False) -> None:
        self.server, self.interval_s, self.gpu = server, interval_s, gpu
        self.samples: list[float] = []
        self.gpu_samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssTrace:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(round(self.server.rss_mb(), 1))
            if self.gpu and (used := gpu_memory_mb()) is not None:
                self.gpu_samples.append(used)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc (the parent of each process is field 4 of its stat)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo += parents.get(current, [])
    return tree


def model_alone(encoder: Encoder, texts: list[str]) -> dict[str, float]:
    """Texts/s of the model without HTTP: batch 1 (one text per call) and batch 32."""
    out = {}
    for batch in (1, 32):
        encoder.encode(texts[:64], batch_size=batch)  # warm-up
        seconds = pass_seconds(functools.partial(call_per_batch, encoder, texts, batch))
        out[f"batch{batch}_texts_per_s"] = len(texts) / seconds
    return out


def call_per_batch(encoder: Encoder, texts: list[str], batch: int) -> None:
    """One `encode` call per `batch` texts, in input order."""
    for i in range(0, len(texts), batch):
        encoder.encode(texts[i : i + batch], batch_size=batch)


def batch_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("fusembed_batch_texts_count")
    return {
        "batches": batches,
        "mean_texts_per_batch": delta("fusembed_batch_texts_sum") / max(batches, 1),
        "model_seconds": delta("fusembed_batch_duration_seconds_sum"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--soak", type=int, default=10_000, help="requests in the soak (default: 10000)")
    parser.add_argument("--warmup", type=int, default=1000, help="requests before the soak's first RSS")
    parser.add_argument(
        "--batching-requests",
        type=int,
        default=1500,
        help="single-text requests per server per round in the batching comparison",
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the batching comparison")
    parser.add_argument(
        "--server-args", default="", help="extra `fusembed serve` options, e.g. '--max-wait-ms 0'"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the servers and the expected vectors run (default: cpu)")
    parser.add_argument("--workers", default=None,
                        help="compare `serve --workers N` for these N (e.g. 1,2), batching on and off; "
                        "runs only that comparison")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="client processes the concurrent clients are spread over (default: 1; "
                        "a GPU server needs several to be loaded fully)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.client_procs < 1:
        parser.error(f"--client-procs must be at least 1, got {args.client_procs}")
    if args.workers:
        workers_comparison(args, [int(n) for n in args.workers.split(",")])
        return

    rng = random.Random(0)
    pool = short_texts(3000, seed=1)
    soak = [rng.sample(pool, rng.randint(1, 4)) for _ in range(args.warmup + args.soak)]
    singles = [[rng.choice(pool)] for _ in range(args.batching_requests)]
    encoder = Encoder(args.bundle, device=args.device)
    expected = dict(zip(pool, encoder.encode(pool), strict=True))
    alone = model_alone(encoder, pool[:2048])
    model = Path(encoder.manifest.source.model).name
    bundle = bundle_info(encoder)
    extra = [*args.server_args.split(), "--device", args.device]
    del encoder

    here = machine()
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": {"cpus": here.cores, "processor": here.cpu, "isa": here.isa,
                    "python": here.python, "onnxruntime": here.onnxruntime},
        "bundle": bundle,
        "client_processes": args.client_procs,
        "model_alone": alone,
    }

    server = Server(args.bundle, *extra)
    asyncio.run(load(server.port, model, soak[: args.warmup], 64, expected, args.client_procs))
    rss_warm = server.rss_mb()
    before, cpu0 = server.metrics(), server.cpu_s()
    with RssTrace(server, gpu=args.device == "cuda") as trace:
        result = asyncio.run(load(server.port, model, soak[args.warmup :], 64, expected, args.client_procs))
    soak_cpu = server.cpu_s() - cpu0
    report["soak"] = {
        **asdict(result),
        "rss_after_warmup_mb": rss_warm,
        "rss_end_mb": server.rss_mb(),
        "rss_trace_mb": trace.samples,
        "gpu_memory_trace_mb": trace.gpu_samples,
        "server_cpu_ms_per_request": 1000 * soak_cpu / result.requests,
        **batch_summary(before, server.metrics()),
    }
    report["soak_exit_code"] = server.stop()

    # Both servers stay up and take turns, round after round (order alternating), so that the
    # host's noise, which moves throughput here by 15-30% from minute to minute, hits both alike.
    servers = {"batching_on": Server(args.bundle, *extra),
               "batching_off": Server(args.bundle, *extra, "--no-batching")}
    cpu = dict.fromkeys(servers, 0.0)
    results: dict[str, list[LoadResult]] = {name: [] for name in servers}
    for server in servers.values():
        asyncio.run(load(server.port, model, singles[:300], 32, None, args.client_procs))  # warm-up
    metrics_before = {name: server.metrics() for name, server in servers.items()}
    ratios = []
    for round_ in range(args.rounds):
        for name in rotated(list(servers), round_):
            server = servers[name]
            cpu0 = server.cpu_s()
            result = asyncio.run(load(server.port, model, singles, 32, expected, args.client_procs))
            results[name].append(result)
            cpu[name] += server.cpu_s() - cpu0
        ratios.append(results["batching_on"][-1].requests_per_s / results["batching_off"][-1].requests_per_s)
    for name, server in servers.items():
        runs = results[name]
        requests = sum(r.requests for r in runs)
        seconds = sum(r.seconds for r in runs)
        report[name] = {
            "rounds": [asdict(r) for r in runs],
            "requests": requests,
            "errors": sum(r.errors for r in runs),
            "min_cosine": min(r.min_cosine for r in runs if r.min_cosine is not None),
            "requests_per_s": requests / seconds,
            "p50_ms": statistics.median(r.p50_ms for r in runs),
            "p99_ms": statistics.median(r.p99_ms for r in runs),
            "server_cpu_ms_per_request": 1000 * cpu[name] / requests,
            **batch_summary(metrics_before[name], server.metrics()),
        }
        server.stop()
    speed = {name: sum(r.requests for r in runs) / sum(r.seconds for r in runs)
             for name, runs in results.items()}
    report["batching_speedup"] = speed["batching_on"] / speed["batching_off"]
    report["batching_speedup_per_round"] = ratios
    report["model_alone_ceiling"] = alone["batch32_texts_per_s"] / alone["batch1_texts_per_s"]
    save_report(args.out, "serve", report, markdown(report))


def workers_comparison(args: argparse.Namespace, counts: list[int]) -> None:
    rng = random.Random(0)
    pool = short_texts(3000, seed=1)
    singles = [[rng.choice(pool)] for _ in range(args.batching_requests)]
    encoder = Encoder(args.bundle, device=args.device)
    expected = dict(zip(pool, encoder.encode(pool), strict=True))
    model = Path(encoder.manifest.source.model).name
    bundle = bundle_info(encoder)
    extra = [*args.server_args.split(), "--device", args.device]
    del encoder
    here = machine()
    servers = {}
    for n in counts:
        for batching in (True, False):
            name = f"workers {n}, batching {'on' if batching else 'off'}"
            flags = [*extra, "--workers", str(n), *([] if batching else ["--no-batching"])]
            servers[name] = Server(args.bundle, *flags)
    for server in servers.values():
        # warm-up: every worker
        asyncio.run(load(server.port, model, singles[:500], 32, None, args.client_procs))
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for round_ in range(args.rounds):
        for name in rotated(list(servers), round_):
            server = servers[name]
            cpu0 = server.cpu_s()
            result = asyncio.run(load(server.port, model, singles, 32, expected, args.client_procs))
            cpu_ms = 1000 * (server.cpu_s() - cpu0) / result.requests
            rounds[name].append({**asdict(result), "server_cpu_ms_per_request": cpu_ms})
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": {"cpus": here.cores, "processor": here.cpu, "isa": here.isa,
                    "python": here.python, "onnxruntime": here.onnxruntime},
        "bundle": bundle,
        "client_processes": args.client_procs,
        "servers": {},
    }
    for name, server in servers.items():
        runs = rounds[name]
        report["servers"][name] = {
            "rounds": runs,
            "errors": sum(r["errors"] for r in runs),
            "min_cosine": min(r["min_cosine"] for r in runs),
            "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
            "server_cpu_ms_per_request": statistics.median(r["server_cpu_ms_per_request"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "exit_code": server.stop(),
        }
    save_report(args.out, "serve-workers", report, workers_markdown(report))


def bundle_info(encoder: Encoder) -> dict[str, object]:
    """What the servers served: the model, the variant and the fusembed commit."""
    return {"model": encoder.manifest.source.model, "variant": encoder.choice.name,
            "precision": encoder.precision, "dim": encoder.dim, "fusembed_commit": fusembed_commit()}


def _run_detail(r: dict[str, Any]) -> str:
    """ISA class, onnxruntime and the bundle, where the report has them (older reports do not)."""
    if "bundle" not in r:
        return ""
    here, bundle = r["machine"], r["bundle"]
    return (f"ISA class {here['isa']}, onnxruntime {here['onnxruntime']}. Bundle: {bundle['model']}, "
            f"variant {bundle['variant']} ({bundle['precision']}, {bundle['dim']} dimensions); "
            f"fusembed at commit {bundle['fusembed_commit']}.")


def workers_markdown(r: dict[str, Any]) -> str:
    lines = [
        "# `fusembed serve --workers N` under load (loopback)",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['processor']}, "
        f"Python {r['machine']['python']}. Clients ({r.get('client_processes', 1)} process(es)) and "
        "server share these CPUs.",
        _run_detail(r),
        "",
        "32 concurrent clients, one text per request. Every server was up for the whole run and they "
        "took turns, round after round, in rotating order; the figures are medians over rounds. "
        "Server CPU is user + system time of every process of the server (with `--workers N`: the "
        "model process and its N HTTP workers) over the requests served.",
        "",
        "| server | errors | min cosine | req/s | p50 ms | p99 ms | server CPU ms/req | exit code |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in r["servers"].items():
        lines.append(
            f"| {name} | {row['errors']} | {row['min_cosine']:.7f} | {row['requests_per_s']:.0f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['server_cpu_ms_per_request']:.2f} "
            f"| {row['exit_code']} |"
        )
    lines += ["", "Requests/s per round:", ""]
    for name, row in r["servers"].items():
        per_round = ", ".join(f"{x['requests_per_s']:.0f}" for x in row["rounds"])
        lines.append(f"- {name}: {per_round}")
    lines += ["", "Batching on / off, requests/s, round by round:", ""]
    for name, on in r["servers"].items():
        off = r["servers"].get(name.replace("batching on", "batching off"))
        if name.endswith("batching on") and off is not None:
            pairs = zip(on["rounds"], off["rounds"], strict=True)
            ratios = [a["requests_per_s"] / b["requests_per_s"] for a, b in pairs]
            lines.append(f"- {name.split(',')[0]}: median {statistics.median(ratios):.2f}x "
                         f"({', '.join(f'{x:.2f}x' for x in ratios)})")
    lines.append("")
    return "\n".join(lines)


def _rss_trace_lines(soak: dict[str, Any]) -> list[str]:
    lines = []
    for key, what in (("rss_trace_mb", "RSS"), ("gpu_memory_trace_mb", "GPU memory in use")):
        trace = soak.get(key) or []
        if len(trace) < 2:
            continue
        half = trace[len(trace) // 2 :]
        step = -(-len(trace) // 20)  # at most 20 values shown
        shown = ", ".join(f"{v:.0f}" for v in trace[::step])
        every = "once a second" if step == 1 else f"every {step} s"
        lines += [f"{what} during the soak, {every} (MB): {shown}. Over its second half: "
                  f"{min(half):.1f} to {max(half):.1f} MB.", ""]
    return lines


def markdown(r: dict[str, Any]) -> str:
    soak, on, off, alone = r["soak"], r["batching_on"], r["batching_off"], r["model_alone"]
    lines = [
        "# `fusembed serve` under load (loopback)",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['processor']}, "
        f"Python {r['machine']['python']}. "
        f"Clients ({r.get('client_processes', 1)} process(es)) and server share these CPUs.",
        _run_detail(r),
        "",
        "## Soak: 64 concurrent clients, 1-4 texts per request",
        "",
        "| requests | texts | errors | min cosine vs `Encoder.encode` | req/s | texts/s | p50 ms | p99 ms "
        "| texts per batch | server CPU ms/req | RSS after warm-up | RSS at end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {soak['requests']} | {soak['texts']} | {soak['errors']} | {soak['min_cosine']:.7f} "
        f"| {soak['requests_per_s']:.0f} | {soak['texts_per_s']:.0f} "
        f"| {soak['p50_ms']:.1f} | {soak['p99_ms']:.1f} "
        f"| {soak['mean_texts_per_batch']:.1f} | {soak['server_cpu_ms_per_request']:.2f} "
        f"| {soak['rss_after_warmup_mb']:.0f} MB | {soak['rss_end_mb']:.0f} MB "
        f"({100 * (soak['rss_end_mb'] / soak['rss_after_warmup_mb'] - 1):+.1f}%) |",
        "",
        *_rss_trace_lines(soak),
        f"The server exited with code {r['soak_exit_code']} on SIGTERM.",
        "",
        "## Dynamic batching: 32 concurrent clients, one text per request",
        "",
        "| server | requests | errors | min cosine | req/s | p50 ms | p99 ms | texts per batch "
        "| server CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in (("batching on", on), ("batching off", off)):
        lines.append(
            f"| {name} | {row['requests']} | {row['errors']} | {row['min_cosine']:.7f} "
            f"| {row['requests_per_s']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
            f"| {row['mean_texts_per_batch']:.1f} | {row['server_cpu_ms_per_request']:.2f} |"
        )
    lines += [
        "",
        f"Batching gives **{r['batching_speedup']:.2f}x** the throughput of the same server without it "
        f"(rounds: {', '.join(f'{x:.2f}x' for x in r['batching_speedup_per_round'])}; the two servers "
        "took turns, so that the host's noise hit both alike). p50 and p99 are medians over rounds.",
        "",
        f"The model alone, no HTTP: {alone['batch1_texts_per_s']:.0f} texts/s one at a time, "
        f"{alone['batch32_texts_per_s']:.0f} texts/s in batches of 32: **{r['model_alone_ceiling']:.2f}x**, "
        "the most batching can give on this machine, before any HTTP cost.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
