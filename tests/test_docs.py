"""README.md and docs/ say what the product does, in a form that cannot drift unnoticed: every block
is run or listed as not runnable here (tests/test_readme.py), the CLI reference has exactly the
options `fusembed COMMAND --help` has, links resolve, and the README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.test_readme import DOCS, NOT_RUN, PAGES, ROOT, RUN, all_blocks

README_MAX_LINES = 220
LINK = re.compile(r"\]\(([^)\s]+)\)")
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


def test_every_page_is_run() -> None:
    assert sorted(p.name for p in (ROOT / "docs").glob("*.md")) == sorted(DOCS)


def test_every_block_runs_or_is_listed_as_not_run_here() -> None:
    found = all_blocks()
    for block in found:
        where = f"{block.page}:{block.line}"
        assert block.language in (*RUN, "bash", "py"), f"{where}: fence language {block.language!r}"
        if block.language not in RUN:
            assert block.key in NOT_RUN, f"{where}: not run, and not in NOT_RUN: {block.key}"
    keys = [b.key for b in found]
    for key in NOT_RUN:
        assert keys.count(key) == 1, f"NOT_RUN entry {key} matches {keys.count(key)} blocks"


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_results_are_stated_as_results() -> None:
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for words in (r"\bstop \d+", r"\bissues? #?\d+", r"\btried and dropped\b"):
            assert not re.search(words, text, re.I), f"{page}: {words!r}: state results, not how work went"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_resolve() -> None:
    for page in PAGES:
        source = ROOT / page
        for target in LINK.findall(source.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (source.parent / path).resolve() if path else source
            assert file.exists(), f"{page}: link to {target}: no such file"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page}: link to {target}: no such heading"


def help_text(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "fusembed", *command, "--help"], capture_output=True,
                          text=True, env=env, check=True).stdout


def help_arguments(command: str) -> set[str]:
    """Positional metavars and option strings (but --help) that `fusembed COMMAND --help` lists."""
    found: set[str] = set()
    for line in help_text(command).splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            names = re.split(r"\s{2,}", line.strip())[0]
            found |= {part.split()[0] for part in names.split(", ")}
    return found - {"-h", "--help"}


def cli_sections() -> dict[str, str]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^## fusembed (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_cli_reference_lists_every_command() -> None:
    commands = set(re.findall(r"^    (\S+)", help_text(), re.M))
    assert "doctor" in commands
    assert set(cli_sections()) == commands
    index = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split("\n## ")[0]
    assert set(re.findall(r"^\| \[`([\w-]+)`\]", index, re.M)) == commands


@pytest.mark.parametrize("command", sorted(cli_sections()))
def test_cli_reference_matches_help(command: str) -> None:
    section = cli_sections()[command]
    documented: set[str] = set()
    for row in re.findall(r"^\| (`.+?) \|", section, re.M):
        documented |= {code.split()[0] for code in re.findall(r"`([^`]+)`", row)}
    assert documented == help_arguments(command), f"docs/cli.md, fusembed {command}"
    mentioned = set(OPTION.findall(re.sub(r"\[[^\]]*\]\([^)]*\)", "", section)))
    unknown = {m for m in mentioned if m.startswith("--")} - help_arguments(command)
    assert not unknown, f"docs/cli.md, fusembed {command} mentions options it does not have: {unknown}"
