"""Serve the same pulses from the hub and from OpenTAXII; poll each fully; print blocks/s and RSS.

Why this shape: a TAXII server is judged by how fast it hands out a collection and what that
costs it in memory. Both servers hold the same 5,000 STIX packages (the hub's own pulses, 20
indicators each, loaded into OpenTAXII as content blocks): the hub as `feedgate hub serve`
(one uvicorn process), OpenTAXII 0.9.3 under gunicorn with 2 workers, both with 1,000 blocks
per part. A thin client follows `more` and counts blocks without parsing them, so the figures
are the servers'; cabby is timed too, for reference (it spends seconds of its own CPU parsing).
Each server's peak RSS is sampled from /proc for its whole process tree while it serves.

    .venv/bin/python bench/taxii_serve.py [--pulses 5000] [--indicators 20]

Needs the peers virtualenv (`make peers`); talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from feedgate import db  # noqa: E402
from feedgate.hub.feed import pulse_doc  # noqa: E402
from feedgate.hub.seed import seed  # noqa: E402
from feedgate.hub.store import HubStore  # noqa: E402
from feedgate.stix.writer import package_xml  # noqa: E402
from peers import build_peers_venv, prepare_opentaxii, start_opentaxii  # noqa: E402

NS = "http://taxii.mitre.org/messages/taxii_xml_binding-1.1"
BLOCK = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Content_Block[\s>]")
ATTR = re.compile(rb'(more|result_id|result_part_number)="([^"]*)"')


def poll_count(url: str, collection: str, auth: tuple[str, str]) -> int:
    """Poll every part, counting blocks in the raw bytes (no XML parsing)."""
    headers = {
        "Content-Type": "application/xml",
        "X-TAXII-Content-Type": "urn:taxii.mitre.org:message:xml:1.1",
        "X-TAXII-Accept": "urn:taxii.mitre.org:message:xml:1.1",
        "X-TAXII-Services": "urn:taxii.mitre.org:services:1.1",
        "X-TAXII-Protocol": "urn:taxii.mitre.org:protocol:http:1.0",
    }
    body = (
        f'<taxii_11:Poll_Request xmlns:taxii_11="{NS}" message_id="1" '
        f'collection_name="{collection}"><taxii_11:Poll_Parameters allow_asynch="false">'
        "<taxii_11:Response_Type>FULL</taxii_11:Response_Type></taxii_11:Poll_Parameters>"
        "</taxii_11:Poll_Request>"
    )
    total = 0
    with httpx.Client(timeout=600, auth=auth) as client:
        while True:
            blocks, attrs = 0, {}
            carry = b""
            with client.stream("POST", url, content=body, headers=headers) as response:
                for chunk in response.iter_bytes():
                    data = carry + chunk
                    if not attrs:
                        attrs = {k.decode(): v.decode() for k, v in ATTR.findall(data[:4096])}
                    blocks += len(BLOCK.findall(data))
                    carry = data[-64:]
                    blocks -= len(BLOCK.findall(carry))  # counted again with the next chunk
                blocks += len(BLOCK.findall(carry))
            total += blocks
            if attrs.get("more") != "true" or not blocks:
                return total
            part = int(attrs.get("result_part_number", "1")) + 1
            body = (
                f'<taxii_11:Poll_Fulfillment xmlns:taxii_11="{NS}" message_id="{part}" '
                f'collection_name="{collection}" result_id="{attrs["result_id"]}" '
                f'result_part_number="{part}"/>'
            )


class PeakRss:
    """Samples the resident memory of a process and its children until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            time.sleep(0.02)


def _tree_rss(pid: int) -> int:
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
        except (OSError, AttributeError):
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulses", type=int, default=5000)
    parser.add_argument("--indicators", type=int, default=20)
    args = parser.parse_args()
    venv = build_peers_venv(log=lambda line: print(line, file=sys.stderr))
    results: list[tuple[str, float, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="feedgate-serve-bench-") as tmp:
        work = Path(tmp)
        print(f"seeding the hub with {args.pulses} pulses ...", file=sys.stderr)
        store = HubStore(db.engine(str(work / "hub.db")))
        seed(store, pulses=args.pulses, indicators_per_pulse=args.indicators, seed=1)
        _, key = store.create_user("bench")
        assert key is not None
        print("writing the same packages into OpenTAXII ...", file=sys.stderr)
        packages = work / "packages"
        packages.mkdir()
        items = []
        for entry in store.pulses_page("AlienVault", limit=args.pulses + 1):
            path = packages / f"{entry.pulse.id}.xml"
            path.write_bytes(package_xml(pulse_doc(entry.pulse), now=entry.label))
            items.append(
                {
                    "collection": "big",
                    "path": str(path),
                    "timestamp": entry.label.isoformat() + "+00:00",
                    "binding": "urn:stix.mitre.org:xml:1.1.1",
                }
            )
        data = prepare_opentaxii(venv, work / "opentaxii")
        data.run_tool({"load_files": items}, timeout=3600)
        env = {**os.environ, "FEEDGATE_HUB_DB": str(work / "hub.db")}
        hub = subprocess.Popen(
            [str(Path(sys.executable).parent / "feedgate"), "hub", "serve", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert hub.stdout is not None
        hub_url = re.search(r"(http://\S+?) ", hub.stdout.readline()).group(1)  # type: ignore[union-attr]
        opentaxii = start_opentaxii(data, workers=2)
        try:
            servers = [
                ("feedgate hub", hub.pid, f"{hub_url}/taxii/poll", "user_AlienVault", (key, "x")),
                (
                    "OpenTAXII 0.9.3",
                    opentaxii.process.pid,
                    opentaxii.url(opentaxii.poll_big_path),
                    "big",
                    (opentaxii.username, opentaxii.password),
                ),
            ]
            for name, pid, url, collection, auth in servers:
                poll_count(url, collection, auth)  # warm up (caches, first connections)
                with PeakRss(pid) as rss:
                    started = time.perf_counter()
                    count = poll_count(url, collection, auth)
                    seconds = time.perf_counter() - started
                results.append((name, seconds, count, rss.peak / 1024**2))
            cabby = []
            for name, _, url, collection, auth in servers:
                started = time.perf_counter()
                subprocess.run(
                    [
                        str(venv.bin("taxii-poll")),
                        "--path",
                        url,
                        "-c",
                        collection,
                        "--username",
                        auth[0],
                        "--password",
                        auth[1],
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                    env={**os.environ, "NO_PROXY": "127.0.0.1"},
                )
                cabby.append((name, time.perf_counter() - started))
        finally:
            hub.send_signal(signal.SIGINT)
            hub.wait(timeout=10)
            opentaxii.stop()
    print(f"\n{args.pulses} pulses x {args.indicators} indicators, 1000 blocks per part")
    print(f"{'server':<18}{'seconds':>9}{'blocks':>8}{'blocks/s':>10}{'peak RSS MB':>13}")
    for name, seconds, count, peak in results:
        print(f"{name:<18}{seconds:>9.2f}{count:>8}{count / seconds:>10,.0f}{peak:>13.1f}")
    ours, theirs = results
    print(f"\nhub vs OpenTAXII: {theirs[1] / ours[1]:.1f}x the blocks/s")
    print("for reference, cabby's taxii-poll (parses every block):")
    for name, seconds in cabby:
        print(f"  from {name:<16}{seconds:>7.2f} s ({args.pulses / seconds:,.0f} blocks/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
