"""Run Python in a subprocess where the heavy libraries cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

BLOCKED = ("torch", "transformers", "sentence_transformers", "optimum")


def prelude(blocked: tuple[str, ...] = BLOCKED) -> str:
    """Python source that makes importing any of `blocked` (top-level names) fail."""
    return textwrap.dedent(f"""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"blocked for this test: {{name}}", name=name)
                return None
        sys.meta_path.insert(0, _Block())
    """)


def run_blocked(
    code: str, *args: str, blocked: tuple[str, ...] = BLOCKED
) -> subprocess.CompletedProcess[str]:
    """Run `code` with `blocked` unimportable, and `args` as sys.argv[1:]."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-c", prelude(blocked) + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
