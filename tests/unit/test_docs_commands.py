"""Every ``lpnode`` command in the docs' shell examples (the README and docs/*.md, ``sh`` and ``console`` blocks)
is one the CLI takes: its flags, subcommands and go-livepeer spellings parse as written.

Shell variables set in the same page (``CHAIN="--network devchain ..."``) are expanded first. A synopsis (a line
with ``[optional]`` parts, ``a|b`` choices, ``...`` or ``PLACEHOLDER`` words) is not an example and is left out;
so is a line naming a variable the page never sets.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from lpnode.cli import _go_style, build_parser

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = ("```sh", "```console")
ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Z_][A-Z_0-9]*)=(.*)$")
COMMAND = re.compile(r"(?:^|[;&|]\s*|sudo\s+|\.venv/bin/|exec\s+|\$\s+)(lpnode\s.*)")
SYNOPSIS = re.compile(r"\[|\.\.\.|…|<\w")
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z_0-9]*|[A-Z]+:[A-Z]+)(?:[=,].*)?$")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def shell_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the page's shell blocks, backslash continuations joined."""
    lines, inside, i = text.splitlines(), False, 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            inside = not inside and fence in SHELL_FENCES
        elif inside:
            start, line = i + 1, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            yield start, line.strip()
        i += 1


def examples(page: Path) -> Iterator[tuple[str, list[str]]]:
    """``("page:line", argv after lpnode)`` for each example command of the page."""
    variables = {"HOME": str(Path.home())}
    for number, line in shell_lines(page.read_text()):
        assigned = ASSIGNMENT.match(line)
        if assigned:
            with contextlib.suppress(ValueError):
                words = shlex.split(assigned[2], comments=True)
                variables[assigned[1]] = words[0] if len(words) == 1 else shlex.join(words)
            continue
        found = COMMAND.search(line)
        if line.startswith("#") or found is None:
            continue
        command = re.split(r"\s(?:\|\||&&|\||;|>|2>)\s", found[1])[0]
        command = re.sub(r"\s#.*$", "", command).rstrip().rstrip("&").strip()
        if SYNOPSIS.search(command):
            continue
        expanded = VARIABLE.sub(lambda m: variables.get(m[1] or m[2], m[0]), command)
        if "$" in expanded:
            continue
        argv = shlex.split(expanded)[1:]
        if any(PLACEHOLDER.match(w) or "|" in w for w in argv if not w.startswith("-")):
            continue
        yield f"{page.relative_to(REPO)}:{number}", argv


EXAMPLES = [example for page in PAGES for example in examples(page)]


def test_the_docs_have_examples_to_check() -> None:
    assert len(EXAMPLES) > 100  # the extraction above still finds the pages' commands


@pytest.mark.parametrize(("where", "argv"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_each_documented_command_parses(where: str, argv: list[str]) -> None:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(_go_style(argv))
    except SystemExit as exc:
        assert not exc.code, f"{where}: lpnode {shlex.join(argv)}\n{errors.getvalue()}"
