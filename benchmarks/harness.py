"""What every benchmark script shares: texts, timing loops, percentiles, process and machine facts.

Standard library only, and no fusembed: `engines.py` imports this in every engine's virtual
environment, including `.venv-fastembed`, which has neither numpy's full stack nor fusembed. The
`fusembed bench` and `fusembed doctor` commands have their own loops in the runtime package, which
cannot import benchmarks/.

- texts: `short_texts` (10-40 word pieces, the shape of queries and titles) and `long_texts`
  (200-512 word pieces), deterministic for a seed;
- timing: `batch1_ms` (single-text calls), `pass_seconds` and `best_pass_seconds` (passes over
  all texts), `rotated` (the order of engines in paired rounds), `percentiles`;
- this process and others: `peak_rss_mb`, `rss_mb`, `cpu_seconds`, `process_age_s`, and
  `Contention`, how much CPU other work took during a run;
- the machine: `machine()` (CPU model, flags, int8 class, cores, versions), `machine_line`;
- the run: `go_offline` (no hub access from sentence-transformers or transformers),
  `package_versions`, `command_line`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import random
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# -- texts ------------------------------------------------------------------------------------

_WHO = ["The new library", "My neighbour", "The city council", "A small startup", "The museum",
        "Our research team", "The river ferry", "A retired teacher", "The football club"]
_DID = ["announced plans for", "quietly cancelled", "is still looking for", "wrote a report on",
        "spent the weekend repairing", "asked the public about", "could not explain"]
_WHAT = ["a cheaper bus service", "the broken heating system", "an exhibition of old maps",
         "faster internet in rural areas", "the missing concert tickets", "a summer reading club"]
_TAIL = ["", " last week", " after a long debate", " before the winter storms arrived",
         " because nobody else would", " in spite of the rain"]


def short_texts(n: int, seed: int = 0) -> list[str]:
    """`n` deterministic short sentences, about 10-40 word pieces each (for all-MiniLM-L6-v2's
    tokenizer), the shape of search queries and titles."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = f"{rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)}{rng.choice(_TAIL)}."
        if i % 3 == 0:  # every third one gets a second clause: the longer end of the range
            text += f" {rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)}."
        out.append(text)
    return out


def long_texts(n: int, seed: int = 7) -> list[str]:
    """`n` passages of about 200-512 word pieces: short sentences strung together."""
    sentences = short_texts(n * 40, seed=seed)
    out, at = [], 0
    for i in range(n):
        count = 12 + (i * 7) % 22  # 12..33 sentences of 10-40 pieces each
        out.append(" ".join(sentences[at : at + count]))
        at += count
    return out


# -- timing -----------------------------------------------------------------------------------

def batch1_ms(call: Callable[[str], object], texts: Sequence[str], repeats: int, *, warmup: int = 0,
              start: int = 0) -> list[float]:
    """Milliseconds of each of `repeats` calls of `call` on one text, cycling through `texts` from
    index `start`, after `warmup` untimed calls (on the first texts)."""
    for i in range(warmup):
        call(texts[i % len(texts)])
    times = []
    for i in range(start, start + repeats):
        text = texts[i % len(texts)]
        began = time.perf_counter()
        call(text)
        times.append((time.perf_counter() - began) * 1000)
    return times


def pass_seconds(run: Callable[[], object]) -> float:
    """Seconds one call of `run` takes: one pass over the texts it encodes."""
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def best_pass_seconds(run: Callable[[], object], *, passes: int = 3, warmup: int = 1) -> float:
    """The fastest of `passes` timed calls of `run`, after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    return min(pass_seconds(run) for _ in range(passes))


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """`items` in the order of paired round `round_`: rotated by one place per round, so that no
    engine always runs first (after another's warm caches) or last."""
    if not items:
        return []
    k = round_ % len(items)
    return [*items[k:], *items[:k]]


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> tuple[float, ...]:
    """The `qs` percentiles of `values`, interpolated linearly between the closest ranks: numpy's
    default method and `statistics.quantiles(method="inclusive")`; the 50th is the median."""
    data = sorted(values)
    if not data:
        raise ValueError("percentiles of no values")
    out = []
    for q in qs:
        at = (len(data) - 1) * q / 100
        low = int(at)
        high = min(low + 1, len(data) - 1)
        out.append(data[low] + (data[high] - data[low]) * (at - low))
    return tuple(out)


# -- this process and others (Linux /proc) ----------------------------------------------------

def _status_kb(pid: int | str, field: str) -> int | None:
    """A kB figure of /proc/PID/status (VmHWM, VmRSS), or None where there is no /proc."""
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory so far. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over exec from the parent, so a child of a big driver process would report the driver's peak."""
    kb = _status_kb("self", "VmHWM")
    if kb is not None:
        return kb / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # macOS: bytes


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` now (VmRSS). Raises OSError if it is gone."""
    kb = _status_kb(pid, "VmRSS")
    if kb is None:
        raise FileNotFoundError(f"/proc/{pid}/status has no VmRSS")
    return kb / 1024


def _stat_fields(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces): field 3 is [0]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def gpu_memory_mb() -> float | None:
    """Memory in use on GPU 0 as nvidia-smi reports it (all processes: run nothing else)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                              "-i", "0"], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return float(out.stdout.strip().splitlines()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, all its threads."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_age_s() -> float:
    """Seconds since this process started, from /proc (10 ms resolution)."""
    started = int(_stat_fields("self")[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def own_cpu_seconds() -> float:
    """CPU-seconds of this process and of the child processes it has waited for (an engine run in
    a subprocess is our own work, not other work)."""
    return sum(os.times()[:4])


def busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (all processes), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")  # not idle, iowait


@dataclass(frozen=True)
class Contention:
    """How much CPU other processes take during a run: it skews every engine, torch most.
    `Contention.start(threads)` before the run, `.report()` after it."""

    threads: int
    wall0: float
    busy0: float
    ours0: float

    @classmethod
    def start(cls, threads: int) -> Contention:
        return cls(threads, time.perf_counter(), busy_seconds(), own_cpu_seconds())

    def share(self) -> float:
        """Other processes' CPU time since the start, as a part of `threads` CPUs' wall time."""
        wall = time.perf_counter() - self.wall0
        others = (busy_seconds() - self.busy0) - (own_cpu_seconds() - self.ours0)
        return max(0.0, others) / (wall * self.threads)

    def report(self) -> str:
        share = self.share()
        verdict = "a quiet machine" if share < 0.05 else "the CPUs were shared: numbers unreliable"
        return f"other work used {share:.0%} of the {self.threads} CPUs during the run ({verdict})"


# -- the machine ------------------------------------------------------------------------------

def isa_class(arch: str, flags: Iterable[str]) -> str:
    """The int8 GEMM kernel class onnxruntime picks for these CPU features; the same table as
    `fusembed.cpu_info().isa`, for scripts that cannot import fusembed or describe another CPU."""
    have = {f.lower() for f in flags}
    if arch.lower() in ("x86_64", "amd64", "x64", "i686", "i386"):
        for name, needs in (("amx", {"amx_tile", "amx_int8"}), ("avx512_vnni", {"avx512bw", "avx512_vnni"}),
                            ("avx_vnni", {"avx_vnni"}), ("avx512", {"avx512bw"}), ("avx2", {"avx2"})):
            if needs <= have:
                return name
        return "x86_64"
    if arch.lower() in ("aarch64", "arm64", "armv8l"):
        return "arm64_dotprod" if "asimddp" in have else "arm64"
    return "other"


@dataclass(frozen=True)
class Machine:
    """This machine as the reports describe it."""

    cpu: str  # model name
    arch: str  # platform.machine()
    flags: frozenset[str]  # as /proc/cpuinfo spells them
    isa: str  # int8 kernel class, see isa_class
    cores: int  # os.cpu_count()
    usable_cores: int  # the CPUs this process may use (affinity mask)
    python: str
    onnxruntime: str  # its version, or "not installed"

    def line(self, threads: int) -> str:
        return (f"machine: {self.cpu}; {threads} usable cores of {self.cores}; "
                f"python {self.python}; onnxruntime {self.onnxruntime}")


@functools.lru_cache(maxsize=1)
def machine() -> Machine:
    """Read once: from /proc/cpuinfo on Linux (x86 says `model name` and `flags`, ARM `Features`)."""
    cpu, flags = "", frozenset[str]()
    cpuinfo = Path("/proc/cpuinfo")
    for line in (cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not cpu:
            cpu = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    arch = platform.machine() or "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    onnxruntime = next((v for v in package_versions(["onnxruntime", "onnxruntime-gpu"]).values()
                        if v != "not installed"), "not installed")
    return Machine(cpu or platform.processor() or "unknown CPU", arch, flags, isa_class(arch, flags),
                   os.cpu_count() or 1, usable, platform.python_version(), onnxruntime)


def machine_line(threads: int) -> str:
    """`machine: CPU; N usable cores of M; python X; onnxruntime Y`, N being `threads`."""
    return machine().line(threads)


# -- the run ----------------------------------------------------------------------------------

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def go_offline() -> None:
    """Keep huggingface_hub, transformers and sentence-transformers off the network in this
    process and its children, unless the caller's environment says otherwise. Scripts call it in
    `main`, before importing torch or sentence-transformers."""
    for var, value in OFFLINE.items():
        os.environ.setdefault(var, value)


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution, or "not installed"."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def fusembed_commit() -> str:
    """The commit of the fusembed these benchmarks belong to: git's, or, where they run from a
    copy without git (a GPU host's payload), the COMMIT file `offline_payload.sh` writes beside
    them; "unknown" otherwise."""
    here = Path(__file__).parent
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=here, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        return (here / "COMMIT").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def command_line() -> str:
    """The command that started this process, as a shell would take it back."""
    return shlex.join(sys.orig_argv)


def save_report(out: Path, stem: str, report: dict[str, object], text: str) -> None:
    """Write `report` as out/STEM.json and its markdown `text` as out/STEM.md; print the text."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)
