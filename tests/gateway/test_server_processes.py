"""`feedgate gateway` and `feedgate milter` as a service manager runs them: stopped by SIGTERM or
Ctrl-C they exit 0 with their scanning workers gone, and killed with SIGKILL their workers end by
themselves (they watch their parent), so no worker outlives its server holding the database.

Before, SIGTERM killed the gateway at once and left its workers running with PPID 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clean_env import clean_env
from postfix import alive, free_port


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _gone_within(pids: set[int], seconds: float) -> set[int]:
    """The pids still alive after ``seconds`` of waiting for them to go (an exit, not an
    ordering: the loop ends as soon as they are gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(map(alive, pids)):
        time.sleep(0.05)
    return {pid for pid in pids if alive(pid)}


#: Each server's command line after ``feedgate``, and the last line it prints once it serves.
SERVERS = {
    "gateway": (
        lambda tmp: [
            *("gateway", "--listen", f"127.0.0.1:{free_port()}"),
            *("--relay", f"127.0.0.1:{free_port()}", "--mail-log", str(tmp / "mail.log")),
        ],
        "mail log:",
    ),
    "milter": (lambda tmp: ["milter", "--listen", "inet:127.0.0.1:0"], "database:"),
}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    arguments, last_line = SERVERS[request.param]
    env = clean_env()
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    # Either serves an existing database only (a typo must not make an empty one).
    subprocess.run(
        [sys.executable, "-m", "feedgate.cli", "db", "upgrade", "--db", str(tmp_path / "f.db")],
        env=env,
        check=True,
        capture_output=True,
    )
    command = [sys.executable, "-m", "feedgate.cli", *arguments(tmp_path)]
    proc = subprocess.Popen(
        [*command, "--db", str(tmp_path / "f.db"), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the last line it prints once it serves
        if line.startswith(last_line):
            break
    else:
        pytest.fail(f"feedgate {request.param} did not start: {proc.communicate()[1]}")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_it_cleanly_with_its_workers(
    server: subprocess.Popen[str], signum: int
) -> None:
    workers = _children(server.pid)
    assert len(workers) >= 2  # the two scanners (and multiprocessing's resource tracker)
    server.send_signal(signum)
    _out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "Traceback" not in err
    assert _gone_within(workers, 30) == set()


def test_killed_with_sigkill_its_workers_end_by_themselves(server: subprocess.Popen[str]) -> None:
    workers = _children(server.pid)
    assert len(workers) >= 2
    server.kill()
    server.wait(timeout=30)
    assert _gone_within(workers, 30) == set()
