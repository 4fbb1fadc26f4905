"""What several commands share: the bundle argument (a folder or a hub id), the encoder options
(--device, --precision, --threads, each declared once here), --batch-size, text inputs, and
argument types that say what they expected. Defaults come from the library's own signatures, so
the CLI cannot drift from them.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from .._batching import CUDA_BATCH_SIZE, DEFAULT_BATCH_SIZE
from .._encoder import Encoder, PrecisionChoice
from .._errors import ArgumentError, HubError
from .._hub import fetch_bundle, looks_like_repo_id
from .._providers import DEVICES
from .._readers import STDIO, format_of, read_texts


def default(function: Callable[..., Any], param: str) -> Any:
    """The default of `param` in `function`'s signature: the one place it is written."""
    return inspect.signature(function).parameters[param].default


# Read once, from the class itself (a test may replace the name `Encoder` here).
_DEVICE, _PRECISION, _THREADS = (default(Encoder, p) for p in ("device", "precision", "threads"))


def add_bundle(p: argparse.ArgumentParser, *, flag: str | None = None) -> None:
    """The bundle: a local folder, or a hub repository id ("org/name") holding one, with --revision.
    Commands read it with `bundle_folder` or `encoder`, which tell the two apart."""
    what = "bundle directory, or hub repository id (org/name) holding a bundle"
    if flag:
        p.add_argument(flag, dest="bundle", required=True, help=what)
    else:
        p.add_argument("bundle", metavar="BUNDLE", help=what)
    p.add_argument("--revision", help="with a hub id: branch, tag or commit (default: main)")


def hub_id(args: argparse.Namespace) -> str | None:
    """The bundle as a hub repository id: it names no local path and reads "org/name". Else None,
    and --revision, which only a hub id takes, must not be given."""
    text = str(args.bundle)
    if not Path(text).expanduser().exists() and looks_like_repo_id(text):
        return text
    if getattr(args, "revision", None) is not None:
        raise ArgumentError("revision", f"is for a hub repository id; {text!r} is a local path")
    return None


def bundle_folder(args: argparse.Namespace) -> Path:
    """The bundle as a local folder: the one given, or a hub bundle's snapshot in the Hugging Face
    cache, fetched if need be, every file checked against the manifest."""
    repo = hub_id(args)
    if repo is None:
        return Path(args.bundle).expanduser()
    with _from_hub(repo):
        return fetch_bundle(repo, revision=args.revision)[0]


@contextmanager
def _from_hub(repo: str) -> Iterator[None]:
    """Say that a path that does not exist was taken as a hub id: it may be a mistyped folder.

    huggingface_hub logs a warning of several lines at each retry when the hub cannot be reached;
    the command's own one-line error says the same at the end, so only its errors are shown."""
    from huggingface_hub.utils import logging as hub_logging  # its loggers, configured on first use

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity(logging.ERROR)
    try:
        yield
    except HubError as exc:
        raise HubError(f"{repo!r} is not a local folder, so it was fetched from the hub: {exc}") from None
    finally:
        hub_logging.set_verbosity(level)


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
        p.add_argument("--batch-size", type=positive_int, default=None,
                       help=f"texts per model call (default: {DEFAULT_BATCH_SIZE} on the CPU, "
                       f"{CUDA_BATCH_SIZE} on CUDA)")


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


def encoder(args: argparse.Namespace, *, thread_spinning: bool = True) -> Encoder:
    """The `Encoder` the options describe, of a local bundle or of one from the hub."""
    device, truncate_dim = device_or_default(args), getattr(args, "truncate_dim", None)
    prompt_name, prompt = getattr(args, "prompt_name", None), getattr(args, "prompt", None)
    repo = hub_id(args)
    if repo is None:
        return Encoder(Path(args.bundle).expanduser(), device=device, precision=args.precision,
                       threads=args.threads, truncate_dim=truncate_dim, prompt_name=prompt_name,
                       prompt=prompt, thread_spinning=thread_spinning)
    with _from_hub(repo):
        return Encoder.from_pretrained(repo, revision=args.revision, device=device,
                                       precision=args.precision, threads=args.threads,
                                       truncate_dim=truncate_dim, prompt_name=prompt_name, prompt=prompt,
                                       thread_spinning=thread_spinning)


def add_text_input(p: argparse.ArgumentParser, flag: str, what: str, *, required: bool = True) -> None:
    p.add_argument(flag, dest="input", type=Path, required=required,
                   help=f"{what}: one text per line, or JSONL (*.jsonl) with --field; "
                   "- reads standard input, one text per line")
    p.add_argument("--field", help="JSONL field holding the text (default: text)")


def input_texts(args: argparse.Namespace) -> list[str]:
    """The texts of `add_text_input`'s input; `--field` only where there are fields (JSONL)."""
    if args.field is not None and (str(args.input) == STDIO or format_of(args.input) != "jsonl"):
        raise ArgumentError("field", f"applies to JSONL input (*.jsonl, *.ndjson); {args.input} is read "
                            "as one text per line")
    return read_texts(args.input, args.field or "text")


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
