"""A throwaway PostgreSQL server for the test suite and the benchmarks.

``initdb`` and ``pg_ctl`` come from the machine's PostgreSQL binaries (``pg_config --bindir``,
or ``KEYTURN_TEST_PG_BINDIR``). The cluster lives in a temp directory, listens on a free
loopback port only, and trusts loopback connections (nothing else can reach it). initdb refuses
to run as root, so as root the cluster belongs to the ``postgres`` user.

``fsync`` is off by default: the suite tests logic, not the disk, and a test that stops the
server still sees every committed transaction (it is in the OS page cache). The benchmarks pass
``durable=True``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .servers import free_port

__all__ = ["PostgresServer", "bindir", "own_server"]

USER = "keyturn"


def bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None when this machine has no PostgreSQL server."""
    configured = os.environ.get("KEYTURN_TEST_PG_BINDIR")
    if configured:
        return Path(configured)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian's layout
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates.insert(0, Path(out))
    return next((p for p in candidates if (p / "initdb").exists() and (p / "pg_ctl").exists()), None)


class PostgresServer:
    """One PostgreSQL cluster: ``start()``, ``stop()``, ``url(db)``, ``create_database(name)``."""

    def __init__(self, *, durable: bool = False, max_connections: int = 300) -> None:
        found = bindir()
        if found is None:
            raise RuntimeError("no PostgreSQL server binaries (install postgresql-15, or set KEYTURN_TEST_PG_BINDIR)")
        self.bin = found
        self.durable = durable
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="keyturn-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.running = False
        subprocess.run(
            [*self._as, str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
             "--no-sync", "--locale=C"],
            check=True, capture_output=True,
        )  # fmt: skip
        atexit.register(self.destroy)

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def _settings(self) -> list[str]:
        values = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
        }
        if not self.durable:
            values |= {"fsync": "off", "full_page_writes": "off"}
        return [f"-c {k}={v}" for k, v in values.items()]

    def start(self) -> None:
        subprocess.run(
            [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
             "-o", " ".join(self._settings()), "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if not self.running:
            return
        subprocess.run(
            [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        self.running = False

    def destroy(self) -> None:
        """Stop the server and delete its files (safe to call twice)."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # databases

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return its rows."""
        return asyncio.run(self._execute(sql, database))

    async def _execute(self, sql: str, database: str) -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(self.url(database, driver="postgresql"), timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    def create_database(self, name: str, template: str = "template1") -> str:
        """Create ``name`` (a copy of ``template``) and return its SQLAlchemy URL."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return self.url(name)
            except Exception as exc:  # the template may still have a closing connection
                if "being accessed by other users" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_server(**options: Any) -> Iterator[PostgresServer]:
    """A PostgreSQL server started now and destroyed on leaving: for a module whose tests stop and
    restart it (the suite's shared server must stay up)."""
    server = PostgresServer(**options)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
