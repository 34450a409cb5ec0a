"""Unit test (no I/O beyond reading files): every command in examples/README.md runs right after the
README's Quick start, which installs only ``.[server]``.

What an example imports, and the program that runs it (``.venv/bin/flask``), must come from a
distribution that the Quick start installs or that the command installs itself
(``.venv/bin/pip install ... -e '.[flask]' && ...``). The example's own imports are the ones that
count: the frameworks it is written for, which keyturn's adapters need too; what those import in
turn, pip installs with them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
INSTALL = re.compile(r"\.venv/bin/pip install -q -c constraints\.txt -e '\.\[([\w,-]+)\]'")
RUNS = re.compile(r"\.venv/bin/(\S+) (?:[^&]*? )?(examples/\w+\.py)")  # in one command of the line


def bash_lines(markdown: str) -> list[str]:
    """Every command line of the ```bash blocks, with backslash continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def extras(line: str) -> set[str]:
    return {extra for found in INSTALL.findall(line) for extra in found.split(",")}


def quick_start_extras() -> set[str]:
    """What the README's Quick start installs (``-e '.[server]'``)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    found: set[str] = set().union(*(extras(line) for line in bash_lines(section)))
    assert found, "the Quick start installs nothing?"
    return found


@cache
def _requires(name: str, extra: str) -> frozenset[tuple[str, frozenset[str]]]:
    """The distributions ``name[extra]`` (``extra`` "" for the base) requires here, with their extras."""
    try:
        texts = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:  # not here: so not what an example imports either
        return frozenset()
    found: set[tuple[str, frozenset[str]]] = set()
    for text in texts:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
            found.add((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return frozenset(found)


def installed_by(wanted: set[str]) -> set[str]:
    """Every distribution (canonical name) that installing keyturn with ``wanted`` extras brings."""
    seen: set[tuple[str, str]] = set()
    todo = [("keyturn", extra) for extra in {"", *wanted}]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for dependency, its_extras in _requires(name, extra):
            todo += [(dependency, e) for e in {"", *its_extras}]
    return {name for name, _ in seen}


def imported_by(example: str) -> set[str]:
    """The top-level modules ``example`` imports, other than the standard library's and keyturn."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / example).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "keyturn"}


def needed_by(example: str, program: str) -> set[str]:
    """The distributions (canonical names) an example's command uses: its imports and the program."""
    owners = importlib.metadata.packages_distributions()
    needed: set[str] = {canonicalize_name(owners[module][0]) for module in imported_by(example)}
    if program not in ("python", "python3"):
        (script,) = importlib.metadata.entry_points(group="console_scripts", name=program)
        assert script.dist is not None
        needed.add(canonicalize_name(script.dist.name))
    return needed


COMMANDS = [line for line in bash_lines((ROOT / "examples" / "README.md").read_text()) if RUNS.search(line)]


def runs(line: str) -> tuple[str, str]:
    """(the program, the example file) a command line runs: ``("flask", "examples/flask_app.py")``."""
    found = RUNS.search(line)
    assert found, line
    return found.group(1), found.group(2)


def test_every_example_has_a_command() -> None:
    """Each examples/*.py is run by some command of examples/README.md (so the test below sees it)."""
    run = {runs(line)[1] for line in COMMANDS}
    assert run == {f"examples/{path.name}" for path in (ROOT / "examples").glob("*.py")}


@pytest.mark.parametrize("line", COMMANDS, ids=lambda line: runs(line)[1])
def test_each_command_installs_what_its_example_needs(line: str) -> None:
    """Flask, Django and DRF are not in `.[server]`: a command that needs them installs its extra."""
    program, example = runs(line)
    missing = needed_by(example, program) - installed_by(quick_start_extras() | extras(line))
    assert missing == set(), f"{line!r} needs {sorted(missing)}, not installed by the Quick start or by itself"
