"""Before gpu.py runs on a GPU host from the offline payload (`offline_payload.sh`'s run.sh):
is every package fusembed and its serve extra need installed, from the payload or there already?
One missing fails here, with its name, not minutes into gpu.py.

    python3 payload_check.py        exit 0, or 1 naming what is missing
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
from collections.abc import Callable, Iterable

# onnxruntime-gpu installs the same `onnxruntime` package under another name
_ALSO = {"onnxruntime": ("onnxruntime-gpu",)}


def installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing(requirements: Iterable[str], is_installed: Callable[[str], bool] = installed) -> list[str]:
    """The distributions named by `requirements` (fusembed's, as its metadata lists them) that
    are needed here and not installed: the core ones and the serve extra's, not the export or
    compare extras'."""
    absent = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        if "extra" in marker and not re.search(r"""extra\s*==\s*["']serve["']""", marker):
            continue
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if found is None:
            raise ValueError(f"cannot read the requirement {requirement!r}")
        name = found.group(1)
        if not any(map(is_installed, (name, *_ALSO.get(name.lower(), ())))):
            absent.append(name)
    return absent


def main() -> int:
    import onnxruntime

    print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())
    absent = missing(metadata.requires("fusembed") or [])
    if absent:
        print(f"missing on this host and not in the payload: {', '.join(absent)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
