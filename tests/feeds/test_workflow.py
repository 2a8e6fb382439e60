"""The admin's day, as real processes: a hub, `source add`, Poll Now, the log, observables."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

FEEDGATE = str(Path(sys.executable).parent / "feedgate")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FEEDGATE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_add_source_poll_now_and_read_the_observables(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FEEDGATE_HUB_DB": str(tmp_path / "hub.db"),
        "FEEDGATE_DB": str(tmp_path / "feeds.db"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NO_PROXY": "127.0.0.1",
    }
    # IPv4 indicators carry OTX's 30-day expiration and the seed dates its pulses back from
    # today's midnight: with 20 pulses the newest public IPv4 expired at 09:25 UTC, so the
    # test passed only in the morning. 30 pulses hold one that expires 12 days after midnight.
    assert run(env, "hub", "seed", "--pulses", "30", "--indicators-per-pulse", "5").returncode == 0
    key = run(env, "hub", "user", "add", "gateway").stdout.strip()
    hub = subprocess.Popen(
        [FEEDGATE, "hub", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert hub.stdout is not None
        port = re.search(r":(\d+) ", hub.stdout.readline()).group(1)  # type: ignore[union-attr]
        env["OTX_KEY"] = key
        added = run(
            env,
            "source",
            "add",
            "otx",
            "--hostname",
            "127.0.0.1",
            "--port",
            port,
            "--no-https",
            "--poll-path",
            "/taxii/poll",
            "--collection",
            "user_AlienVault",
            "--username",
            key,
            "--password-env",
            "OTX_KEY",
            "--age",
            "365d",
            "--segment",
            "30d",
        )
        assert added.returncode == 0, added.stderr
        polled = run(env, "poll", "otx")
        assert polled.returncode == 0, polled.stderr
        read = [int(n) for n in re.findall(r"(\d+) observables read", polled.stdout)]
        assert read and read[-1] > 0  # the summary line
        assert re.search(r'Info: source "otx": poll done: ', polled.stdout)
        assert key not in polled.stdout
        again = run(env, "poll", "otx")
        assert "poll done: 1 segment(s), 0 blocks, 0 observables read" in again.stdout
        listed = run(
            env, "observables", "--source", "otx", "--format", "jsonl", "--limit", "100000"
        )
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        done = re.search(r"poll done: .* (\d+) new, ", polled.stdout)
        assert done is not None
        assert len(rows) == int(done.group(1)) > 0  # a value in two pulses is stored once
        assert {row["kind"] for row in rows} >= {"ipv4", "domain", "url"}
        log = run(env, "log", "--source", "otx")
        assert "poll started" in log.stdout and "poll done" in log.stdout
        missing = run(env, "poll", "nope")
        assert missing.returncode == 1 and "no source named 'nope'" in missing.stderr
        assert run(env, "poll").returncode == 2
    finally:
        hub.send_signal(signal.SIGINT)
        hub.wait(timeout=10)
