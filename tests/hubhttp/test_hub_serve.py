"""`feedgate hub serve` as an admin runs it: a real process, polled with taxii-poll."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from feedgate import db
from feedgate.hub.store import HubStore

FEEDGATE = Path(sys.executable).parent / "feedgate"
TAXII_POLL = Path(sys.executable).parent / "taxii-poll"


def test_seed_serve_and_poll(tmp_path: Path) -> None:
    env = {**os.environ, "FEEDGATE_HUB_DB": str(tmp_path / "hub.db"), "NO_PROXY": "127.0.0.1"}
    subprocess.run(
        [FEEDGATE, "hub", "seed", "--pulses", "30", "--indicators-per-pulse", "4"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    key = subprocess.run(
        [FEEDGATE, "hub", "user", "add", "bob"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    server = subprocess.Popen(
        [FEEDGATE, "hub", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"hub on http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = match.group(1)
        deadline = time.monotonic() + 10
        while True:
            done = subprocess.run(
                [
                    TAXII_POLL,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--path",
                    "/taxii/poll",
                    "-c",
                    "user_AlienVault",
                    "--username",
                    key,
                    "--password",
                    "x",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert done.returncode == 0, done.stderr
        store = HubStore(db.engine(env["FEEDGATE_HUB_DB"]))
        public = sum(e.pulse.public for e in store.pulses_page("AlienVault", limit=100))
        store.close()
        assert 0 < public < 30  # bob sees the public ones: the others are private
        assert f" {public} blocks polled" in done.stderr
        assert done.stdout.count("</stix:STIX_Package>") == public
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)


def test_serve_on_a_busy_port_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    env = {**os.environ, "FEEDGATE_HUB_DB": str(tmp_path / "hub.db")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        done = subprocess.run(
            [FEEDGATE, "hub", "serve", "--port", port],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"feedgate: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        " (choose another with --port, or stop what is using it)"
    )  # not a bare "[Errno 98]"
