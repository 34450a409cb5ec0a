"""Unit tests of the keyturn package root: a curated public namespace that pulls in no framework.

One test starts a fresh Python interpreter (a subprocess, nothing else) to see what
``import keyturn`` loads.
"""

from __future__ import annotations

import json
import subprocess
import sys

import keyturn

HEAVY = (
    "fastapi", "starlette", "sqlalchemy", "argon2", "pydantic", "pydantic_settings", "uvicorn", "alembic",
    "flask", "django", "rest_framework",
)  # fmt: skip


def test_all_is_sorted_and_unique() -> None:
    assert keyturn.__all__ == sorted(keyturn.__all__)
    assert len(set(keyturn.__all__)) == len(keyturn.__all__)


def test_every_name_in_all_exists() -> None:
    missing = [name for name in keyturn.__all__ if not hasattr(keyturn, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from keyturn import *", namespace)  # noqa: S102 - the statement is a constant
    assert sorted(k for k in namespace if k != "__builtins__") == keyturn.__all__


def test_core_entry_points_are_exported() -> None:
    for name in ("KeyRing", "SigningKey", "issue_access_token", "verify_access_token", "KeyturnError", "InvalidToken"):
        assert name in keyturn.__all__


def test_version_is_a_string() -> None:
    assert isinstance(keyturn.__version__, str)
    assert keyturn.__version__.count(".") == 2


def test_importing_keyturn_loads_no_web_framework_database_or_password_library() -> None:
    code = f"import json, sys, keyturn; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(result.stdout) == []
