"""The `fusembed` command: one module per command, each with `add_parser` and `run`.

Exit codes: 0 success, 1 the work failed (bad bundle, unreadable input, failed export),
2 the command line was wrong, 130 interrupted. Errors go to stderr, without tracebacks.

    _options.py      what several commands share: the bundle, --device/--precision/--threads,
                     --batch-size, text inputs, and the argument types
    export.py  encode.py  search.py  info.py  bench.py  serve.py  embed_corpus.py  doctor.py  push.py
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .._errors import ArgumentError, FusembedError
from . import bench, doctor, embed_corpus, encode, export, info, push, search, serve

# In the order `fusembed --help` lists them.
COMMANDS = (export, encode, search, bench, serve, embed_corpus, info, doctor, push)


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("fusembed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + 13  # SIGPIPE
    except ArgumentError as exc:  # the library names its parameter; the user typed a flag
        print(f"fusembed {args.command}: error: {_as_flag(commands[args.command], exc)}", file=sys.stderr)
        return 2
    except (FusembedError, ImportError, OSError) as exc:
        print(f"fusembed {args.command}: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's subparser by name."""
    parser = argparse.ArgumentParser(
        prog="fusembed",
        description="Sentence embeddings from fused ONNX graphs, with no torch at run time.",
    )
    parser.add_argument("--version", action="version", version=f"fusembed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {}
    for command in COMMANDS:
        p = command.add_parser(sub)
        p.set_defaults(run=command.run)
        commands[p.prog.split()[-1]] = p
    return parser, commands


def _as_flag(parser: argparse.ArgumentParser, exc: ArgumentError) -> str:
    """`exc`'s message with its parameter named by the flag that sets it, when one does."""
    for action in parser._actions:  # argparse keeps no public index of options by dest
        if action.dest == exc.param and action.option_strings:
            return f"{action.option_strings[-1]} {exc.problem}"
    return str(exc)
