"""Messages per second through ``feedgate gateway``, beside a bare relay and beside one core's scan.

On the generated corpus of ``bench/mail_corpus.py`` (``--messages``, 5 KB to 2 MB), with
``--clients`` SMTP clients sending at once (8 by default), this prints, measured in one run:

- **bare relay**: messages/s through a plain aiosmtpd server that relays every message to the
  sink and scans nothing (``bench/_bare_relay.py``, its own process): the cost of the SMTP part;
- **gateway**: messages/s through ``feedgate gateway`` (its own process, ``--workers`` scan
  processes, default the machine's cores) with some of the corpus's URLs loaded as observables,
  the match log and the mail index on, as a gateway runs;
- **scan, one core**: messages/s of ``Scanner.scan`` in this process on the same corpus (CPU
  seconds): the cost of scanning. Goal: gateway ≥ 1.7 × this on 2 cores (both cores busy);
- p50/p99 latency of a message of 80-120 KB through each, under the full load and from one
  client sending one message after another; the gateway's added p99 over the bare relay is the
  one-client figure (goal: ≤ 50 ms), the time the gateway adds to a message rather than its
  wait in a saturated queue;
- the CPU milliseconds each message costs in each process (this one's clients and sink, the
  server's event loop, its scan workers), read from ``/proc``: the sum bounds what two cores can
  do at all, whatever the server's design, since the load and the sink share the machine.

The sink (an aiosmtpd server in this process) only counts. Every accepted message must reach
it or the quarantine: the counts are checked at the end.

    PYTHONPATH=src .venv/bin/python bench/gateway.py [--messages 400] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from feedgate.db import engine
from feedgate.feeds.secrets import KEY_ENV, generate_key
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.scanner import Scanner
from feedgate.observables import Kind, Observable
from mail_corpus import corpus, url_for

HERE = Path(__file__).resolve().parent


class Sink:
    """Counts what it is given."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 2.0.0 sink"


@contextmanager
def sink() -> Iterator[tuple[Sink, int]]:
    counter = Sink()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> asyncio.Server:
        return await loop.create_server(
            lambda: SMTP(counter, hostname="sink", data_size_limit=None), "127.0.0.1", 0
        )

    server = asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        yield counter, server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes], deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                if smtp.noop()[0] == 250:
                    return
        except OSError:
            time.sleep(0.1)  # not up yet: a start-up wait, not an ordering
    raise SystemExit(f"nothing answers on port {port}")


def send_all(port: int, raws: list[bytes], clients: int) -> tuple[float, list[tuple[int, float]]]:
    """Wall seconds to send every message with ``clients`` connections at once, and each
    message's (size, seconds from DATA to the final reply)."""
    latencies: list[tuple[int, float]] = []
    lock = threading.Lock()
    queue = list(enumerate(raws))

    def client() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.ehlo("bench.example")
            while True:
                with lock:
                    if not queue:
                        return
                    _index, raw = queue.pop()
                smtp.mail("bench@sender.example")
                smtp.rcpt("user@rcpt.example")
                started = time.perf_counter()
                code, text = smtp.data(raw)
                took = time.perf_counter() - started
                if code != 250:
                    raise SystemExit(f"refused: {code} {text!r}")
                with lock:
                    latencies.append((len(raw), took))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for done in [pool.submit(client) for _ in range(clients)]:
            done.result()
    return time.perf_counter() - started, latencies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (``/proc/PID/stat``, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the gateway's scan workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid`` itself and of its live children together."""
    children = 0.0
    for child in _children(pid):
        with suppress(OSError):
            children += _cpu_seconds(child)
    return _cpu_seconds(pid), children


def percentiles(latencies: list[tuple[int, float]]) -> tuple[float, float]:
    mid = sorted(t for size, t in latencies if 80_000 <= size <= 120_000)
    if len(mid) < 2:
        mid = sorted(t for _size, t in latencies)
    p50 = statistics.median(mid)
    p99 = mid[min(len(mid) - 1, round(0.99 * (len(mid) - 1)))]
    return p50 * 1000, p99 * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, generate_key())
    raws = [path.read_bytes() for path in corpus(args.messages)]
    hundred_kb = [raw for raw in raws if 80_000 <= len(raw) <= 120_000] or raws[:10]
    print(
        f"corpus: {len(raws)} messages, {sum(map(len, raws)) / 1e6:.0f} MB; {args.clients} clients"
    )
    with tempfile.TemporaryDirectory(prefix="feedgate-gateway-bench-") as tmp:
        db = Path(tmp) / "feeds.db"
        store = FeedStore(engine(str(db)))
        store.add_source(Source(name="bench", hostname="otx.example", collection="c"))
        now = datetime.now(UTC)
        with store.segment("bench") as seg:
            seg.upsert([Observable(Kind.URL, url_for(n)) for n in range(0, 1_000_000, 50)], now)
            seg.finish(now)
        scanner = Scanner(store, PolicyStore(store.engine, store.source_names), log=False)
        scanner.scan(raws[0])
        started = time.process_time()
        for raw in raws:
            scanner.scan(raw)
        one_core = len(raws) / (time.process_time() - started)
        store.close()

        env = {**os.environ, "XDG_DATA_HOME": str(Path(tmp) / "xdg")}
        results: dict[str, tuple[float, float, float]] = {}
        with sink() as (counter, sink_port):
            for name in ("bare relay", "gateway"):
                port = free_port()
                if name == "bare relay":
                    command = [
                        sys.executable,
                        str(HERE / "_bare_relay.py"),
                        str(port),
                        str(sink_port),
                    ]
                else:
                    command = [
                        *(sys.executable, "-m", "feedgate.cli", "gateway", "--db", str(db)),
                        *("--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{sink_port}"),
                        *("--workers", str(args.workers), "--mail-log", str(Path(tmp) / "m.log")),
                    ]
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                try:
                    wait_for(port, process)
                    before = counter.count
                    loop_before, workers_before = _tree_cpu(process.pid)
                    here_before = time.process_time()
                    wall, latencies = send_all(port, raws, args.clients)
                    relayed = counter.count - before
                    here = time.process_time() - here_before
                    loop_cpu, workers_cpu = _tree_cpu(process.pid)
                    loop_cpu -= loop_before
                    workers_cpu -= workers_before
                    # The latency a message gains, not its wait in a saturated queue: the
                    # 80-120 KB messages again, one client, one after the other.
                    _wall, alone = send_all(port, hundred_kb * 3, 1)
                finally:
                    process.terminate()
                    process.wait(30)
                quarantined = len(raws) - relayed
                rate = len(raws) / wall
                p50, p99 = percentiles(latencies)
                alone_p50, alone_p99 = percentiles(alone)
                results[name] = (rate, alone_p50, alone_p99)
                print(
                    f"{name:11} {rate:7.1f} messages/s, p50 {p50:6.1f} ms, p99 {p99:6.1f} ms"
                    f" (100 KB messages, {args.clients} clients); {relayed} relayed,"
                    f" {quarantined} kept back"
                )
                print(
                    f"{'':11} one client: p50 {alone_p50:6.1f} ms, p99 {alone_p99:6.1f} ms"
                    f" ({len(alone)} messages of 80-120 KB)"
                )
                per = 1000 / len(raws)
                total = (here + loop_cpu + workers_cpu) * per
                print(
                    f"{'':11} CPU ms/message: clients+sink {here * per:.1f}, server loop"
                    f" {loop_cpu * per:.1f}, scan workers {workers_cpu * per:.1f}; total"
                    f" {total:.1f} (at most {2000 / total:.0f} messages/s on 2 cores)"
                )
    gateway_rate, _p50, gateway_p99 = results["gateway"]
    print(f"scan, one core: {one_core:.1f} messages/s")
    print(
        f"gateway / one-core scan: {gateway_rate / one_core:.2f}x (goal >= 1.7 on 2 cores);"
        f" added p99 over the bare relay, one client: {gateway_p99 - results['bare relay'][2]:.1f}"
        " ms (goal <= 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
