"""Unit test (reads files and imports modules, no I/O beyond that) that ``docs/design.md``'s table
of where each rule lives names modules and symbols that exist: a reader checking a row against
the code finds what it says."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
_TABLE = DESIGN.split("## Where each rule lives", 1)[1].split("\n\n", 2)[1]
ROWS = [line for line in _TABLE.splitlines() if line.startswith("| ") and not line.startswith(("| rule", "| ---"))]
_CODE = re.compile(r"`([^`]+)`")


def module_of(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    return ".".join(["keyturn", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def references(row: str) -> list[tuple[str, str]]:
    """(module, dotted symbol) for every symbol the row names, each after the module it follows."""
    found, module = [], None
    for cell in row.strip("|").split("|"):
        module = None
        for code in _CODE.findall(cell):
            if code.endswith(".py"):
                module = module_of(code)
                found.append((module, ""))
            elif re.fullmatch(r"[A-Za-z_][\w.]*", code) and module is not None:
                found.append((module, code))
    return found


def test_the_table_has_a_row_per_rule_the_issue_names() -> None:
    wanted = ("rotation", "reuse", "grace", "idle and absolute", "cookie", "CSRF", "Origin", "claims", "scopes",
              "rate limits")  # fmt: skip
    assert all(any(w in row.split("|")[1] for row in ROWS) for w in wanted)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.split("|")[1].strip())
def test_every_module_and_symbol_in_the_row_exists(row: str) -> None:
    refs = references(row)
    assert refs, "a row names at least one module"
    for module, symbol in refs:
        target: object = importlib.import_module(module)
        for name in symbol.split(".") if symbol else ():
            assert hasattr(target, name), f"{module} has no {symbol}"
            target = getattr(target, name)
