"""How wide a corpus run on Ray is (`fusembed.ray.embed_corpus_with_ray`). Kept apart from
`fusembed.ray` so that reading these options (the CLI does, for its defaults) does not import Ray."""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import ArgumentError, check_positive_int


@dataclass(frozen=True)
class RayOptions:
    """Where a corpus run on Ray runs, and how wide (`embed_corpus_with_ray`).

    Attributes:
        address: the Ray cluster to join, e.g. "ray://head:10001"; None starts a local cluster,
            or uses the one this process is already connected to (after `ray.init()`).
        workers: embedding actors, each holding one copy of the bundle.
        cpus_per_worker: CPUs Ray reserves per actor; also its onnxruntime threads, unless
            `threads` is given.
        gpus_per_worker: GPUs per actor; above 0 the actors run on CUDA, unless `device` is given.

    Raises:
        ArgumentError: a count out of range.
    """

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        check_positive_int("workers", self.workers)
        check_resources(self.cpus_per_worker, self.gpus_per_worker, cpus="cpus_per_worker",
                        gpus="gpus_per_worker")


def check_resources(num_cpus: float, num_gpus: float, *, cpus: str, gpus: str) -> None:
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
        raise ArgumentError(cpus, f"must be a number above 0, got {num_cpus!r}")
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or not num_gpus >= 0:
        raise ArgumentError(gpus, f"must be a number of at least 0, got {num_gpus!r}")
