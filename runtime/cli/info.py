"""`fusembed info BUNDLE`: what the manifest says, and which variant `auto` runs on this CPU."""

from __future__ import annotations

import argparse
from typing import Any

from .._auto import choose_auto
from .._cpu import cpu_info
from .._manifest import read_manifest
from ._options import add_bundle, bundle_folder


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("info", help="show what a bundle's manifest says")
    add_bundle(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    folder = bundle_folder(args)
    manifest = read_manifest(folder)
    if args.json:
        print(manifest.to_json(), end="")
        return 0
    print(manifest.describe(folder))
    cpu = cpu_info()
    print(f"this cpu    {cpu.describe()}")
    try:
        choice = choose_auto(manifest, "cpu", cpu)
        print(f"auto (cpu)  {choice.name}: {choice.reason}")
    except LookupError:
        print("auto (cpu)  no variant of this bundle runs on the CPU")
    return 0
