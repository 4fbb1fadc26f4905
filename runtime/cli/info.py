"""`fusembed info BUNDLE`: what the manifest says, and which variant `auto` runs on this CPU."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._auto import choose_auto
from .._cpu import cpu_info
from .._errors import BundleError
from .._manifest import check_files, read_manifest
from ._options import add_bundle, bundle_folder


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("info", help="show what a bundle's manifest says")
    add_bundle(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Exit status 1 when a file the manifest lists is missing or fails its sha256: the manifest
    is still shown, and each damaged file named (the variants it does not touch still run)."""
    folder = bundle_folder(args)
    manifest = read_manifest(folder, files=())
    problems = []
    for name in manifest.files:
        try:
            check_files(folder, manifest, [name])
        except BundleError as exc:
            problems.append(str(exc))
    if args.json:
        print(manifest.to_json(), end="")
        for problem in problems:
            print(f"fusembed info: damaged: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(manifest.describe(folder))
    print("files       " + (f"{len(problems)} of {len(manifest.files)} damaged" if problems else
                            f"all {len(manifest.files)} match their sha256"))
    for problem in problems:
        print(f"PROBLEM     {problem}")
    cpu = cpu_info()
    print(f"this cpu    {cpu.describe()}")
    try:
        choice = choose_auto(manifest, "cpu", cpu)
        print(f"auto (cpu)  {choice.name}: {choice.reason}")
    except LookupError:
        print("auto (cpu)  no variant of this bundle runs on the CPU")
    return 1 if problems else 0
