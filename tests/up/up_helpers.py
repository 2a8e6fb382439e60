"""What the `feedgate up` tests share: the environment a subprocess gets, `up` run as a real
process in a session of its own (so its whole process tree can be found and Ctrl-C sent to it
as a terminal sends it), its lines read until "API:", and the processes it left behind."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clean_env import clean_env

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
TOKEN = "up-test-token-0123456789abcdefghijklmnop"
#: Seconds `up` may take to say "API:" (seeding, one poll, spawning the scanning workers) on a
#: loaded two-core machine.
START_TIMEOUT = 180.0


def up_env(tmp_path: Path, **more: str) -> dict[str, str]:
    """No FEEDGATE_ setting of the caller leaks in, except the clock (make test-future); the
    data directory (the databases, the Maildir, the logs) is the test's."""
    env = clean_env()
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        FEEDGATE_API_TOKEN=TOKEN,
        NO_PROXY="127.0.0.1",
    )
    return {**env, **more}


def feedgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FEEDGATE, *args], env=env, capture_output=True, text=True, timeout=120)


def feedgate_bytes(env: dict[str, str], *args: str) -> bytes:
    """What ``feedgate ARGS`` writes to stdout, as bytes (line endings as written)."""
    done = subprocess.run([FEEDGATE, *args], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (``up`` and everything it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def spawned_children(parent: int) -> list[int]:
    """The live spawn-started processes (a gateway's scanning workers) whose parent is
    ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if (
                fields is not None
                and fields[0] != "Z"
                and int(fields[1]) == parent
                and "multiprocessing.spawn" in cmdline(int(entry.name))
            ):
                found.append(int(entry.name))
    return sorted(found)


@dataclass
class Up:
    """A running `feedgate up`: its process and the lines it said up to "API:"."""

    proc: subprocess.Popen[str]
    lines: list[str]
    stderr: Path

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def said(self, pattern: str) -> re.Match[str]:
        found = re.search(pattern, self.text, re.MULTILINE)
        assert found, f"{pattern!r} not in:\n{self.text}"
        return found

    @property
    def gateway_port(self) -> int:
        return int(self.said(r"^gateway:\s+127\.0\.0\.1:(\d+) -> relay ").group(1))

    @property
    def api(self) -> str:
        return self.said(r"^API:\s+(http://\S+)/api/v1/").group(1)

    def scanning_workers(self) -> list[int]:
        """The gateway's worker processes now: spawn-started children of `up`."""
        return spawned_children(self.proc.pid)

    def stop(self, how: str = "ctrl-c") -> int:
        """Stop `up` as a terminal's Ctrl-C does (SIGINT to its whole process group) or as a
        service manager does (``"sigterm"``: SIGTERM to the process); its exit status."""
        if self.proc.poll() is None:
            if how == "ctrl-c":
                os.killpg(self.proc.pid, signal.SIGINT)
            else:
                self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


def gone_within(pgid: int, seconds: float) -> list[int]:
    """The members of process group ``pgid`` still there after ``seconds`` at most (an empty
    list as soon as there are none): what a stopped `up` left behind."""
    deadline = time.monotonic() + seconds
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@contextmanager
def running_up(
    tmp_path: Path, env: dict[str, str], *args: str, gateway_port: int = 0
) -> Iterator[Up]:
    """`feedgate up --port 0 --gateway-port GATEWAY_PORT ARGS` until it said "API:"; stopped
    (Ctrl-C) at the end if the test did not stop it."""
    err = tmp_path / "up.stderr"
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            [FEEDGATE, "up", "--port", "0", "--gateway-port", str(gateway_port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            start_new_session=True,
        )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    up = Up(proc, [], err)
    try:
        while not up.lines or not up.lines[-1].startswith("API:"):
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no API: line yet:\n{up.text}{err.read_text()}") from None
            assert line, f"up ended before API:\n{up.text}{err.read_text()}"
            up.lines.append(line)
        yield up
    finally:
        if proc.poll() is None:
            up.stop()
        reader.join(timeout=30)  # stdout ends with the process
