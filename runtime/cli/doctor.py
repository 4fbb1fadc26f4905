"""`fusembed doctor BUNDLE`: every variant's cosine and speed on this machine, and auto's choice."""

from __future__ import annotations

import argparse
from typing import Any

from .._doctor import doctor
from .._errors import CommandError
from ._options import add_bundle, bundle_folder, default, hub_id, positive_int


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check a bundle on this machine: every variant's cosine and speed, and auto's choice",
        description="Run the bundle's check texts (stored with their sentence-transformers fp32 embeddings "
        "at export) through every variant on this machine, in paired rounds, and print per variant the "
        "cosine to that reference, sentences/s and batch-1 latency, with the CPU, its int8 class, the "
        "providers and threads, and which variant precision=auto uses here and why. Exits 1 when a "
        "variant does not run or gives other vectors here than at export.")
    add_bundle(p)
    p.add_argument("--threads", type=positive_int, default=default(doctor, "threads"),
                   help="intra-op threads (default: the CPUs this process may use)")
    p.add_argument("--rounds", type=positive_int, default=default(doctor, "rounds"),
                   help="timing rounds, every variant once per round (default: %(default)s)")
    p.add_argument("--record", action="store_true",
                   help="store the measurements in the bundle's manifest, so that precision=auto decides "
                   "by them on every CPU of this class")
    return p


def run(args: argparse.Namespace) -> int:
    if args.record and hub_id(args) is not None:
        raise CommandError(f"--record writes into the bundle's manifest, and {args.bundle!r} is a hub bundle "
                           "in the shared cache: download it to a folder (`hf download "
                           f"{args.bundle} --local-dir DIR`), record there, and push that folder")
    report = doctor(bundle_folder(args), threads=args.threads, rounds=args.rounds, record=args.record)
    print(report.text())
    return 0 if report.ok else 1
