"""`fusembed push BUNDLE org/name`: publish a bundle to a Hugging Face hub model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._hub import push_bundle


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "push", help="publish a bundle to a Hugging Face hub repository",
        description="Check the bundle (every sha256), create the model repository if it does not exist, "
        "and commit manifest.json, the files it lists and a model card (the bundle's own README.md, "
        "else one generated from the manifest) in one commit. `Encoder.from_pretrained(REPO_ID)` and "
        "every command's BUNDLE then load it by name.")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory")
    p.add_argument("repo_id", metavar="REPO_ID", help="hub repository id, org/name")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", metavar="BRANCH",
                   help="branch to commit to, created from main if need be (default: main)")
    p.add_argument("--token", help="hub token with write access (default: $HF_TOKEN, else the one "
                   "`hf auth login` stored)")
    p.add_argument("--message", help="commit message (default: 'fusembed bundle of MODEL')")
    return p


def run(args: argparse.Namespace) -> int:
    result = push_bundle(args.bundle, args.repo_id, private=args.private, revision=args.revision,
                         token=args.token, message=args.message)
    print(f"pushed {args.bundle} to {result.repo_id} ({result.revision}, commit {result.commit}): "
          f"{len(result.files)} files, {result.card} model card", file=sys.stderr)
    print(result.url)
    return 0
