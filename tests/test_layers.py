"""Unit tests (no I/O beyond reading the source) of the package's architecture: the import layers
and the size limits that keep each rule in one small, findable place.

The layers (``docs/design.md``): the pure core imports nothing of keyturn's other faces; the
verifier and the client import no server; the framework adapters import the verifier, never the
server; inside the server, only the service joins the core to the store, and the HTTP edge and the
CLI call the service's public package, never the store or the service's modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "keyturn"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


def imports(name: str) -> Iterator[str]:
    """Every module ``name`` imports (absolute names; ``from pkg import mod`` counts ``pkg.mod``)."""
    path = MODULES[name]
    here = name.split(".") if is_package(path) else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES)


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(sources: tuple[str, ...], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for name in MODULES:
        if not within(name, *sources) or within(name, *allowed):
            continue
        found += [f"{name} imports {target}" for target in imports(name) if within(target, *forbidden)]
    return sorted(set(found))


FACES = ("keyturn.server", "keyturn.verify", "keyturn.client", "keyturn.integrations")
WEB = ("fastapi", "starlette", "flask", "django", "rest_framework", "uvicorn", "httpx")


def test_the_core_imports_no_other_face_and_no_web_framework() -> None:
    assert violations(("keyturn.core",), (*FACES, *WEB)) == []


def test_the_verifier_and_the_client_import_no_server() -> None:
    assert violations(("keyturn.verify",), ("keyturn.server", "keyturn.client", "keyturn.integrations")) == []
    assert violations(("keyturn.client",), ("keyturn.server", "keyturn.verify", "keyturn.integrations")) == []


def test_no_adapter_imports_the_server() -> None:
    assert violations(("keyturn.integrations",), ("keyturn.server", "keyturn.client")) == []


def test_only_the_store_speaks_sql() -> None:
    assert violations(("keyturn",), ("sqlalchemy", "alembic", "aiosqlite", "asyncpg"), ("keyturn.server.store",)) == []


def test_only_the_service_imports_the_store() -> None:
    """One exception, through the store's package: settings check ``KEYTURN_DATABASE_URL`` with the
    store's own URL parser, so a bad URL is refused at start-up as a setting, naming it."""
    allowed = ("keyturn.server.store", "keyturn.server.service")
    assert violations(("keyturn",), ("keyturn.server.store",), allowed) == [
        "keyturn.server.config imports keyturn.server.store"
    ]


def test_nothing_outside_the_store_imports_its_modules() -> None:
    """The service (and config) use the store's package, never ``store.sql``, ``store.records``..."""
    inner = tuple(n for n in MODULES if n.startswith("keyturn.server.store."))
    assert violations(("keyturn",), inner, ("keyturn.server.store",)) == []


def test_the_http_edge_and_the_cli_use_only_the_services_public_package() -> None:
    """``keyturn.server.service`` itself, never one of its modules (``service.auth``, ...)."""
    inner = tuple(n for n in MODULES if n.startswith("keyturn.server.service."))
    assert violations(("keyturn.server.http", "keyturn.server.cli"), inner) == []


def test_only_the_token_and_key_modules_import_the_jose_library() -> None:
    assert violations(("keyturn",), ("jwt", "joserfc"), ("keyturn.core.keys", "keyturn.core.tokens")) == []


def test_only_the_edges_import_web_frameworks() -> None:
    edges = ("keyturn.server.http", "keyturn.server.cli", "keyturn.integrations")
    frameworks = tuple(w for w in WEB if w != "httpx")  # httpx is the verifier's and the client's HTTP client
    assert violations(("keyturn",), frameworks, edges) == []


def test_nothing_outside_the_service_touches_its_context() -> None:
    """The service's shared context (``svc.ctx``) is its own business."""
    found = []
    for name, path in MODULES.items():
        if within(name, "keyturn.server.service"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "ctx"]
    assert found == []


def test_the_layer_rules_see_imports(tmp_path: Path) -> None:
    """The checker itself: a relative import of a sibling module is resolved to its full name."""
    assert "keyturn.server.service" in set(imports("keyturn.server.http.routes"))
    assert "keyturn.core.errors" in set(imports("keyturn.verify.bearer"))
    assert violations(("keyturn.server.http",), ("keyturn.server.service",)) != []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: split it"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_stay_short(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
