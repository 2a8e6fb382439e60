"""A mistyped database name (real ``feedgate`` processes): a command that only reads says "no
such database" and leaves the disk as it was; one that writes creates the database, and a
SQLite file feedgate creates is for its owner only (0600, in a 0700 directory it makes)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clean_env import clean_env
from feedgate.feeds import secrets
from pgserver import PgServer

FEEDGATE = str(Path(sys.executable).parent / "feedgate")

#: Every command that only reads (or removes), each with the database named by --db.
READERS = [
    ["hub", "user", "list"],
    ["hub", "user", "delete", "alice"],
    ["hub", "key", "list"],
    ["hub", "key", "revoke", "0123456789ab"],
    ["source", "list"],
    ["source", "show", "otx"],
    ["log"],
    ["observables"],
    ["poll", "otx"],
    ["poll", "--all"],
    ["db", "current"],
    # A server that writes (quarantine, match log) but must not serve an empty database made
    # of a typo: it would enforce nothing, and say nothing of it.
    ["gateway", "--listen", "127.0.0.1:0", "--relay", "127.0.0.1:9"],
    ["milter", "--listen", "inet:127.0.0.1:0"],
]


def environment(tmp_path: Path) -> dict[str, str]:
    env = clean_env()
    return {
        **env,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        secrets.KEY_ENV: secrets.generate_key(),
        "NO_PROXY": "127.0.0.1",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FEEDGATE, *args], env=env, capture_output=True, text=True, timeout=60)


def the_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    (line,) = done.stderr.splitlines()
    assert line.startswith("feedgate: error: "), line
    return line


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reader_does_not_create_a_mistyped_database(tmp_path: Path, command: list[str]) -> None:
    """Each of these created the file (and its folders) and then answered as if it were an
    empty database: "no sources", an empty log, a poll of nothing."""
    env = environment(tmp_path)
    typo = tmp_path / "fedgate" / "feeds.db"
    line = the_error(run(env, *command, "--db", str(typo)))
    assert line == (
        f"feedgate: error: database {typo}: no such database "
        "(check the name; only a command that adds something, such as `feedgate source add` or"
        " `feedgate db upgrade`, makes one)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no file, no data dir


def test_a_reader_does_not_create_the_database_named_by_the_environment(tmp_path: Path) -> None:
    env = {**environment(tmp_path), "FEEDGATE_DB": f"sqlite:///{tmp_path}/typo.db"}
    assert "no such database" in the_error(run(env, "source", "list"))
    assert not (tmp_path / "typo.db").exists()


def test_a_writer_creates_the_database_for_its_owner_only(tmp_path: Path) -> None:
    env = environment(tmp_path)
    db = tmp_path / "new" / "feeds.db"
    added = run(env, "source", "add", "otx", "--hostname", "otx.example", "--poll-path", "/p",
                "--collection", "c", "--db", str(db))  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    made = [p for p in db.parent.iterdir() if p.name.startswith("feeds.db")]
    assert {p.name for p in made} >= {"feeds.db"}
    for path in made:  # feeds.db and, while SQLite keeps them, its -wal and -shm
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    listed = run(env, "source", "list", "--db", str(db))
    assert listed.returncode == 0 and "otx" in listed.stdout


def test_wal_and_shm_files_are_the_owners_only(tmp_path: Path) -> None:
    """SQLite gives -wal and -shm the database file's mode: seen while a store is open."""
    from feedgate import db
    from feedgate.feeds.store import FeedStore

    path = tmp_path / "feeds.db"
    store = FeedStore(db.engine(str(path)))
    try:
        store.log_entries()
        sidecars = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        store.close()
    assert sidecars == {"feeds.db": 0o600, "feeds.db-wal": 0o600, "feeds.db-shm": 0o600}


def test_a_missing_postgresql_database_is_the_same_one_line(
    tmp_path: Path, pg_server: PgServer
) -> None:
    env = environment(tmp_path)
    url = pg_server.url("no_such_db")
    for command in (["source", "list"], ["log"], ["source", "add", "x", "--hostname", "h",
                    "--poll-path", "/p", "--collection", "c"]):  # fmt: skip
        line = the_error(run(env, *command, "--db", url))
        assert line.startswith(f"feedgate: error: database {url}: no such database"), line
