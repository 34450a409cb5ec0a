"""Unit test (reads files only) that ``tests/`` mirrors ``src/keyturn/``: one test module per source module.

The rule, for a module under ``src/keyturn/``:

- ``a/b/name.py`` is tested in ``tests/a/b/test_name.py``; a private ``a/b/_name.py`` in
  ``tests/a/b/test_name.py`` too (the underscore dropped).
- a package's ``a/b/__init__.py`` that holds code is tested in ``tests/a/b/test_b.py``. One that
  holds only a docstring, imports, ``__all__`` and other dunder constants (a re-export list) needs
  no test module of its own: what it re-exports is tested where it is defined.

Anything else is in ``EXEMPT`` below, with the reason, and the test checks each entry still names
a module that exists (and, when it says where the module is tested, a test module that exists).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "keyturn"
TESTS = ROOT / "tests"

# module (relative to src/keyturn) -> (where it is tested instead, or None; why)
EXEMPT: dict[str, tuple[str | None, str]] = {
    "__init__.py": ("test_package.py", "the package root is its public API, pinned with the other public paths"),
    "integrations/django/__init__.py": (
        "integrations/test_django.py",
        "Django's settings are process-wide: one module configures them once for the middleware and DRF",
    ),
    "integrations/django/drf.py": ("integrations/test_django.py", "as integrations/django/__init__.py"),
    "integrations/django/urls.py": (
        "integrations/test_resource_metadata.py",
        "as integrations/django/__init__.py; tested with every adapter's RFC 9728 metadata",
    ),
    "integrations/django/_resource.py": ("integrations/test_resource_metadata.py", "as integrations/django/urls.py"),
    "server/http/schemas.py": (
        "server/http/test_schema.py",
        "the request and response models are checked through the OpenAPI document they generate",
    ),
    "server/store/url.py": (
        "server/test_config.py",
        "the database URL is normalised as a setting; its tests are those of KEYTURN_DATABASE_URL",
    ),
    "server/store/_sqlite.py": (
        "server/store/test_engine.py",
        "the inline SQLite connection is what every SQLite store test runs on; engine's pin its waits",
    ),
    "server/store/_postgres.py": (
        "server/store/test_engine.py",
        "the pool's check on checkout is the engine's: every PostgreSQL store test runs through it",
    ),
    "server/store/records.py": (
        "server/store/test_sessions.py",
        "frozen dataclasses; the one derived value (UserRecord.standing) is pinned with the refresh fast path",
    ),
    "server/store/_queries.py": (
        "server/store/test_sql.py",
        "the open connection and the record-to-row helper every query group shares; every query test runs them",
    ),
    "server/store/schema.py": (
        "server/store/test_sql.py",
        "table declarations; test_sql checks the migrations create what they declare",
    ),
}
EXEMPT_FOLDERS = ("server/store/migrations/",)  # Alembic scripts: every store test runs them


def has_code(init: Path) -> bool:
    """Whether a package's ``__init__.py`` holds more than a docstring, imports and dunder constants."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if targets and all(isinstance(t, ast.Name) and t.id.startswith("__") and t.id.endswith("__") for t in targets):
            continue
        return True
    return False


def mirror(module: Path) -> Path | None:
    """The test module the rule asks for, or ``None`` when the rule asks for none."""
    relative = module.relative_to(SOURCE)
    if module.name == "__init__.py":
        if not has_code(module) or relative.parent == Path():
            return None
        return TESTS / relative.parent / f"test_{relative.parent.name}.py"
    return TESTS / relative.parent / f"test_{module.stem.removeprefix('_')}.py"


def modules() -> list[str]:
    return sorted(str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*.py"))


def test_every_module_has_its_test_module() -> None:
    missing = []
    for name in modules():
        if name in EXEMPT or name.startswith(EXEMPT_FOLDERS):
            continue
        wanted = mirror(SOURCE / name)
        if wanted is not None and not wanted.is_file():
            missing.append(f"{name} -> {wanted.relative_to(ROOT)}")
    assert not missing, "without a test module (write it, or exempt the module with a reason):\n" + "\n".join(missing)


def test_every_exemption_names_a_module_and_its_tests_that_exist() -> None:
    """A module moved or deleted, or a test module renamed, leaves no stale exemption behind."""
    stale = [name for name in EXEMPT if not (SOURCE / name).is_file()]
    stale += [f"{name} -> {tests}" for name, (tests, _) in EXEMPT.items() if tests and not (TESTS / tests).is_file()]
    assert stale == []


def test_no_exemption_is_one_the_rule_already_meets() -> None:
    needless = [name for name in EXEMPT if (wanted := mirror(SOURCE / name)) is not None and wanted.is_file()]
    assert needless == []


def test_the_rule_maps_modules_as_stated() -> None:
    """The rule itself, on modules that exist: a plain, a private and a package module, and a re-export list."""
    assert mirror(SOURCE / "core" / "tokens.py") == TESTS / "core" / "test_tokens.py"
    assert mirror(SOURCE / "core" / "_strictjson.py") == TESTS / "core" / "test_strictjson.py"
    assert mirror(SOURCE / "verify" / "__init__.py") == TESTS / "verify" / "test_verify.py"
    assert mirror(SOURCE / "server" / "store" / "__init__.py") is None
    assert mirror(SOURCE / "core" / "__init__.py") is None


def test_every_test_folder_init_is_empty_or_a_docstring() -> None:
    """Helpers live in named modules (``tests/helpers.py``, ``tests/multi/fleet.py``), never in a
    package's ``__init__.py``, where an import would not say where they come from."""
    holding = [str(p.relative_to(ROOT)) for p in TESTS.rglob("__init__.py") if has_code(p) or _imports(p)]
    assert holding == []


def _imports(module: Path) -> bool:
    return any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.parse(module.read_text(encoding="utf-8")).body)
