"""mypy over the three rooms: runtime/ (`fusembed`), export/ (`fusembed.export`) and benchmarks/.

mypy cannot follow setuptools' editable install (an import hook) nor the `package-dir` mapping
that makes runtime/ the package `fusembed` and export/ the package `fusembed.export`, so this
builds that package as a tree of links (in .mypy_cache/) and checks it from there. Paths
in mypy's report are mapped back to the repository's. Settings and per-module strictness are in
pyproject.toml's `[tool.mypy]`.

    python -m tests.typecheck      (what `make lint` runs; tests/test_typecheck.py runs it too)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def link_tree(into: Path) -> Path:
    """`into/fusembed`: every entry of runtime/ linked, plus `export` linked to export/."""
    package = into / "fusembed"
    package.mkdir()
    for entry in (ROOT / "runtime").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "export").symlink_to(ROOT / "export")
    return package


def run_mypy() -> subprocess.CompletedProcess[str]:
    """mypy over `fusembed` (both rooms) and every benchmark script; its report, paths mapped back."""
    # One fixed place, so that paths in mypy's incremental cache stay valid from run to run.
    tree = ROOT / ".mypy_cache" / "package-tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    package = link_tree(tree)
    benchmarks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("*.py"))
    env = {**os.environ, "MYPYPATH": os.pathsep.join([str(tree), str(ROOT / "benchmarks")])}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         str(package), *benchmarks],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    # mypy prints the paths it was given: the links. Name the files a reader opens instead.
    out = done.stdout
    for shown in (str(package), str(package.relative_to(ROOT))):  # mypy may print either
        out = out.replace(f"{shown}/export/", "export/").replace(f"{shown}/", "runtime/")
    return subprocess.CompletedProcess(done.args, done.returncode, out, done.stderr)


def main() -> int:
    done = run_mypy()
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
