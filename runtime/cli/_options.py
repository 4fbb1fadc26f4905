"""What several commands share: the bundle argument, the encoder options (--device, --precision,
--threads, each declared once here), --batch-size, text inputs, and argument types that say what
they expected. Defaults come from the library's own signatures, so the CLI cannot drift from them.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from .._encoder import Encoder, PrecisionChoice
from .._providers import DEVICES


def default(function: Callable[..., Any], param: str) -> Any:
    """The default of `param` in `function`'s signature: the one place it is written."""
    return inspect.signature(function).parameters[param].default


# Read once, from the class itself (a test may replace the name `Encoder` here).
_DEVICE, _PRECISION, _THREADS = (default(Encoder, p) for p in ("device", "precision", "threads"))
_BATCH_SIZE = default(Encoder.encode, "batch_size")


def add_bundle(p: argparse.ArgumentParser, *, flag: str | None = None) -> None:
    if flag:
        p.add_argument(flag, dest="bundle", type=Path, required=True, help="bundle directory")
    else:
        p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory")


def add_encoder_options(p: argparse.ArgumentParser, *, batch_size: bool = True,
                        device_default: str | None = None) -> None:
    """--device, --precision and --threads, as `Encoder` takes them; --batch-size as `encode` does.
    Where the device's default depends on other options, `device_default` says how; --device is
    then None unless given, and the command decides (`device_or_default`)."""
    p.add_argument("--device", choices=DEVICES, default=None if device_default else _DEVICE,
                   help=f"where the model runs (default: {device_default or _DEVICE}); "
                   "cuda needs onnxruntime-gpu")
    p.add_argument("--precision", choices=get_args(PrecisionChoice), default=_PRECISION,
                   help="model variant (default: %(default)s: the fastest one measured to keep the "
                   "model's quality on this machine)")
    p.add_argument("--threads", type=positive_int, default=_THREADS,
                   help="intra-op threads (default: the CPUs this process may use)")
    if batch_size:
        p.add_argument("--batch-size", type=positive_int, default=_BATCH_SIZE,
                       help="texts per model call (default: %(default)s)")


def add_prompt_options(p: argparse.ArgumentParser, *, prefix: str = "", who: str = "each text") -> None:
    """--prompt-name and --prompt, as `Encoder.encode` takes them (with `prefix`: --query-prompt...)."""
    flag = f"--{prefix}-" if prefix else "--"
    p.add_argument(f"{flag}prompt-name", help=f"one of the model's prompts (`fusembed info` lists them), "
                   f"put before {who}; default: the model's default prompt, if it has one")
    p.add_argument(f"{flag}prompt", help=f"a text put before {who} (wins over {flag}prompt-name)")


def add_truncate_dim(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truncate-dim", type=positive_int, default=None,
                   help="keep the first N dimensions of each embedding (Matryoshka models)")


def device_or_default(args: argparse.Namespace) -> Any:
    """--device, or `Encoder`'s default device when it was not given."""
    return args.device or _DEVICE


def encoder(args: argparse.Namespace) -> Encoder:
    return Encoder(args.bundle, device=device_or_default(args), precision=args.precision,
                   threads=args.threads, truncate_dim=getattr(args, "truncate_dim", None),
                   prompt_name=getattr(args, "prompt_name", None), prompt=getattr(args, "prompt", None))


def add_text_input(p: argparse.ArgumentParser, flag: str, what: str, *, required: bool = True) -> None:
    p.add_argument(flag, dest="input", type=Path, required=required,
                   help=f"{what}: one text per line, or JSONL (*.jsonl) with --field; "
                   "- reads standard input, one text per line")
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")


def _in_range(text: str, convert: Callable[[str], float], low: float, high: float, what: str) -> float:
    """`text` as a number in [low, high], or the argparse error that says what was expected."""
    try:
        value = convert(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # nan fails too
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return int(_in_range(text, int, 1, math.inf, "a positive integer"))


def port(text: str) -> int:
    return int(_in_range(text, int, 0, 65535, "a TCP port 0-65535"))


def non_negative_int(text: str) -> int:
    return int(_in_range(text, int, 0, math.inf, "a whole number >= 0"))


def non_negative_float(text: str) -> float:
    return _in_range(text, float, 0, math.inf, "a number >= 0")


def positive_float(text: str) -> float:
    return _in_range(text, float, math.ulp(0.0), math.inf, "a number > 0")


def size_list(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return sizes
