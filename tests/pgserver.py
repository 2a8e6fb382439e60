"""A real PostgreSQL server for the tests, started once per session (pytest plugin).

Fixtures:

- `pg_server` (session): a :class:`PgServer` from Debian's packages (``initdb`` and ``pg_ctl``
  found under /usr/lib/postgresql/*/bin or on PATH), in a temporary directory of its own,
  listening on 127.0.0.1 only, on a free port, with its unix socket in that directory, trust
  authentication for local and 127.0.0.1 connections and ``fsync=off`` (the data is thrown away
  at the end, so durability buys nothing and costs seconds). Stopped with ``pg_ctl stop -m fast``
  and removed when the session ends.
- `pg_url` (function): ``postgresql://postgres@127.0.0.1:PORT/<fresh database>``, a database
  made for that test alone (CREATE DATABASE from template1 takes a few tens of ms).
- `any_db` (function, parametrized ``sqlite`` / ``postgresql``): a :class:`Database`, a fresh
  SQLite file or a fresh PostgreSQL database, so one test runs on both backends.

Why our own instead of pytest-postgresql (which design.md names): pytest-postgresql runs
``initdb`` and ``pg_ctl`` as the current user, and CI runs as root, which both programs refuse.
Here, when we are root, the directory is given to the unprivileged ``postgres`` user (the
Debian package creates it) and the server programs run as that user (``subprocess``'s
``user=``/``group=``, i.e. setuid in the child); the tests themselves connect over TCP and need
no privileges.

When PostgreSQL is not installed (``make test`` installs it when it runs as root, see the
Makefile's ``sysdeps``), a test that needs it is skipped loudly, or fails under
FEEDGATE_REQUIRE_ALL=1 (``peers.require``), since CI must run everything.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peers import require

#: The unprivileged account that runs the server when the tests run as root.
PG_USER = "postgres"
START_TIMEOUT = 60.0


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory that has initdb, else initdb's on PATH."""

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PgServer:
    """One running server; ``url(db)`` names a database on it."""

    bindir: Path
    root: Path  # the temporary directory: data/, the socket, the log
    port: int = 0
    _run_as: dict[str, Any] = field(default_factory=dict)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def start(cls) -> PgServer:
        bindir = find_bindir()
        if bindir is None:
            raise PgUnavailable(
                "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on "
                "PATH); `make test` installs it with apt when run as root"
            )
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(PG_USER)
            except KeyError:
                raise PgUnavailable(
                    f"running as root and there is no {PG_USER!r} user to run initdb as"
                ) from None
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        # Not under pytest's basetemp: that is 0700 root, which the postgres user cannot enter;
        # nor under a TMPDIR it cannot enter.
        base = Path(tempfile.gettempdir())
        if run_as and not all(p.stat().st_mode & 0o001 for p in (base, *base.parents)):
            base = Path("/tmp")
        root = Path(tempfile.mkdtemp(prefix="feedgate-pg-", dir=base))
        server = cls(bindir, root, _run_as=run_as)
        try:
            server._init()
            server._launch()
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> None:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if self._run_as:
            env["HOME"] = str(self.root)
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._run_as,
        )
        if done.returncode != 0:
            log = ""
            if self.log_path.exists():
                log = self.log_path.read_text(errors="replace")[-2000:]
            raise PgUnavailable(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def _init(self) -> None:
        if self._run_as:
            os.chown(self.root, self._run_as["user"], self._run_as["group"])
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth=trust",  # local and host 127.0.0.1/::1 lines, all trust
            "--no-sync",
            "--no-instructions",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# feedgate tests (tests/pgserver.py)\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _launch(self) -> None:
        last: PgUnavailable | None = None
        for _ in range(5):  # a free port can be taken by someone else before we bind it
            self.port = free_port()
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log_path),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT)),
                    "start",
                )
            except PgUnavailable as exc:
                last = exc
                continue
            self._wait_ready()
            return
        assert last is not None
        raise last

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=5):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut) and remove its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except (PgUnavailable, subprocess.TimeoutExpired):
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- databases -------------------------------------------------------------------------

    def database_bytes(self, url: str) -> bytes:
        """Every byte on disk of the database ``url`` names, after a checkpoint, with the WAL:
        for tests that a secret is nowhere in the clear."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        files = [*(self.data / "base" / str(row[0])).iterdir(), *(self.data / "pg_wal").iterdir()]
        return b"".join(path.read_bytes() for path in sorted(files) if path.is_file())

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@dataclass(frozen=True)
class Database:
    """A fresh database of one backend: ``url`` for :func:`feedgate.db.engine`, and
    ``raw_bytes()``, everything it holds on disk."""

    backend: str  # "sqlite" | "postgresql"
    url: str
    server: PgServer | None = None
    path: Path | None = None

    def raw_bytes(self) -> bytes:
        if self.server is not None:
            return self.server.database_bytes(self.url)
        assert self.path is not None
        return b"".join(p.read_bytes() for p in self.path.parent.glob(self.path.name + "*"))


@pytest.fixture(scope="session")
def _pg_server_or_reason() -> Iterator[PgServer | str]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield "psycopg is not installed (pip install -e '.[test]')"
        return
    try:
        server = PgServer.start()
    except (PgUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        yield f"cannot start PostgreSQL: {exc}"
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server(_pg_server_or_reason: PgServer | str) -> PgServer:
    """The session's PostgreSQL server (skips loudly, or fails under FEEDGATE_REQUIRE_ALL=1,
    when there is none)."""
    if isinstance(_pg_server_or_reason, str):
        require(_pg_server_or_reason)
    return _pg_server_or_reason


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database on the session's server, for this test alone."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A fresh SQLite file, then (second parameter) a fresh database on the session's
    PostgreSQL server."""
    if request.param == "sqlite":
        path = tmp_path / "feeds.db"
        return Database("sqlite", str(path), path=path)
    server: PgServer = request.getfixturevalue("pg_server")
    return Database("postgresql", server.create_database(), server=server)
