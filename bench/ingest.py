"""End-to-end ingest from the hub: feedgate's poller against cabby + python-stix + SQLite.

One hub (``feedgate hub serve``) is seeded with --indicators indicators (20 per pulse, spread
over six months before today) and polled end to end — poll, parse, store — by two contenders,
each in a process of its own; CPU and peak memory are those of its whole process tree (feedgate
parses large poll parts on worker processes):

- the anchor: what an admin writes with the usual libraries, run in the peers virtualenv:
  cabby 0.1.23's ``create_client(...).poll(...)`` over the whole window (it pages with Poll
  Fulfillment itself), ``STIXPackage.from_xml`` per block (python-stix 1.2.0.11; cybox's object
  cache cleared after each package), indicators → observables → object properties, and one
  ``executemany`` INSERT of (kind, value, package id) per package into a SQLite table, committed
  once at the end;
- feedgate: ``poll_source`` (30-day segments, one transaction each) into a fresh SQLite
  FeedStore: normalised, de-duplicated observables with their context.

The hub renders a package per pulse revision on the first poll and keeps it, so one warm-up poll
runs first and both contenders are timed on a warm hub. Then, unless --quick, feedgate alone
polls a hub of --large-indicators (default 1,000,000) for its rate and peak RSS at scale.

    .venv/bin/python bench/ingest.py [--indicators 200000] [--large-indicators 1000000] [--quick]

Needs the peers virtualenv (`make peers`); talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from peers import build_peers_venv, cabby_env  # noqa: E402

PER_PULSE = 20
AUTHOR = "AlienVault"
COLLECTION = f"user_{AUTHOR}"
POLL_PATH = "/taxii/poll"
AGE_DAYS = 200  # the seed spreads pulses over 180 days before today
SEGMENT_DAYS = 30

ANCHOR = r"""
import io, json, sqlite3, sys
from datetime import datetime, timedelta, timezone

import cybox.utils
from cabby import create_client
from stix.core import STIXPackage

host, port, key, collection, path, db_path, age_days = sys.argv[1:8]
end = datetime.now(timezone.utc)
begin = end - timedelta(days=int(age_days))

conn = sqlite3.connect(db_path)
conn.execute("CREATE TABLE indicator (kind TEXT, value TEXT, package TEXT)")


def values(obj):
    props = obj.properties if obj is not None else None
    if props is None:
        return
    kind = type(props).__name__
    if kind == "File":
        for h in props.hashes or ():
            yield str(h.type_), str(h.simple_hash_value)
    elif kind == "Address":
        yield str(props.category), str(props.address_value)
    elif kind == "Mutex":
        yield kind, str(props.name)
    elif getattr(props, "value", None) is not None:  # DomainName, URI
        yield kind, str(props.value)


def walk(observable):
    if observable is None:
        return
    if observable.observable_composition is not None:
        for inner in observable.observable_composition.observables:
            yield from walk(inner)
    else:
        yield from values(observable.object_)


client = create_client(host, port=int(port), discovery_path="/taxii/discovery")
client.set_auth(username=key, password="x")
blocks = rows = 0
for block in client.poll(collection, begin_date=begin, end_date=end, uri=path):
    blocks += 1
    package = STIXPackage.from_xml(io.BytesIO(block.content))
    found = []
    for indicator in package.indicators or ():
        for observable in indicator.observables or ():
            for kind, value in walk(observable):
                found.append((kind, value, package.id_))
    conn.executemany("INSERT INTO indicator VALUES (?, ?, ?)", found)
    rows += len(found)
    cybox.utils.cache_clear()
conn.commit()
conn.close()
print(json.dumps({"blocks": blocks, "observables": rows}))
"""

# Seeding and the warm-up run in processes of their own: a child's peak RSS as the kernel counts
# it is never below its parent's RSS when it was started, so this process stays small.
SEED = r"""
import json, sys, time

from feedgate import db
from feedgate.hub.seed import seed
from feedgate.hub.store import HubStore

db_path, pulses, per_pulse, author = sys.argv[1:5]
store = HubStore(db.engine(db_path))
began = time.perf_counter()
seed(store, pulses=int(pulses), indicators_per_pulse=int(per_pulse), author=author)
_, key = store.create_user("bench")
store.close()
print(json.dumps({"key": key, "seconds": time.perf_counter() - began}))
"""

WARM_UP = r"""
import json, sys, time
from datetime import UTC, datetime, timedelta

from feedgate.taxii.client import TaxiiClient

host, port, key, collection, path, _db, age_days = sys.argv[1:8]
began = time.perf_counter()
end = datetime.now(UTC)
with TaxiiClient(host=host, port=int(port), username=key, password="x",
                 timeout=(10.0, 3600.0)) as client:
    blocks = sum(1 for _ in client.poll(collection, end - timedelta(days=int(age_days)), end,
                                        uri=path))
print(json.dumps({"blocks": blocks, "seconds": time.perf_counter() - began}))
"""

FEEDGATE = r"""
import json, sys
from datetime import timedelta

from feedgate import db
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore

host, port, key, collection, path, db_path, age_days, segment_days = sys.argv[1:9]
store = FeedStore(db.engine(db_path))
source = Source(
    name="hub", hostname=host, port=int(port), use_https=False, poll_path=path,
    collection=collection, username=key, password="x", age=timedelta(days=int(age_days)),
    poll_segment=timedelta(days=int(segment_days)), max_retries=0,
)
store.add_source(source)
log = ThreatFeedLog(store, write_file=False)
result = poll_source(store, source, log)
if not result.ok:
    sys.exit(f"poll failed: {result.error}")
stored = sum(store.count_observables("hub").values())
store.close()
print(json.dumps({"blocks": result.blocks, "observables": stored, "read": result.read}))
"""


@dataclass
class Result:
    name: str
    indicators: int
    seconds: float
    cpu: float  # the whole process tree
    peak_rss_mb: float  # the contender's own process (kernel's peak RSS)
    peak_tree_mb: float  # its whole process tree (peak of summed PSS, sampled)
    blocks: int
    read: int  # observables read from the packages
    observables: int  # rows stored (feedgate: unique normalised observables)
    store_mb: float

    @property
    def rate(self) -> float:
        return self.indicators / self.seconds if self.seconds else 0.0

    @property
    def obs_rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


class Hub:
    """A seeded hub database served by ``feedgate hub serve --port 0`` in its own process."""

    def __init__(self, workdir: Path, indicators: int) -> None:
        self.pulses = max(1, indicators // PER_PULSE)
        self.indicators = self.pulses * PER_PULSE
        self.db_path = workdir / f"hub-{self.indicators}.db"
        seeded = _json_of(
            "seeding the hub",
            [
                sys.executable,
                "-c",
                SEED,
                str(self.db_path),
                str(self.pulses),
                str(PER_PULSE),
                AUTHOR,
            ],
        )
        self.key: str = seeded["key"]
        self.seed_seconds: float = seeded["seconds"]
        feedgate = Path(sys.executable).parent / "feedgate"
        self.log = (workdir / f"hub-{self.indicators}.log").open("wb")
        self.process = subprocess.Popen(
            [str(feedgate), "hub", "serve", "--port", "0", "--db", str(self.db_path)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        match = re.search(r"http://([\d.]+):(\d+)", line)
        if not match:
            self.stop()
            log = (workdir / f"hub-{self.indicators}.log").read_text(errors="replace")
            raise SystemExit(f"the hub did not start: {line!r}\n{log[-3000:]}")
        self.host, self.port = match.group(1), int(match.group(2))

    def warm_up(self) -> tuple[int, float]:
        """Poll the whole window once (thin: count blocks) so every package is rendered."""
        done = _json_of(
            "the warm-up poll", [sys.executable, "-c", WARM_UP, *self.args(self.db_path)]
        )
        return done["blocks"], done["seconds"]

    def args(self, db_path: Path) -> list[str]:
        return [
            self.host,
            str(self.port),
            self.key,
            COLLECTION,
            POLL_PATH,
            str(db_path),
            str(AGE_DAYS),
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.log.close()


def _json_of(what: str, command: list[str]) -> dict[str, Any]:
    """Run a helper script; the JSON object on the last line of its output."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _own_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def store_mb(path: Path) -> float:
    """The database file with its WAL and shared-memory files, in MB."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1024**2


class TreeSampler:
    """Peak memory and CPU of a process and every process under it (feedgate's parse workers
    come from a fork server, so the kernel's wait4 figures of the poller alone would leave
    them out). Memory is PSS — shared pages divided among the processes sharing them — summed
    over the tree, sampled every 20 ms; CPU is the last sampled user+system time of each."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self.peak_pss_mb = 0.0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_full_info().pss
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
                except psutil.Error:
                    continue
            self.peak_pss_mb = max(self.peak_pss_mb, total / 1024**2)
            self._stop.wait(0.02)

    def stop(self) -> float:
        """Stop sampling; the CPU seconds of the processes other than the root."""
        self._stop.set()
        self._thread.join()
        return sum(cpu for pid, cpu in self._cpu.items() if pid != self._root.pid)


def run(
    name: str, command: list[str], db_path: Path, indicators: int, env: dict[str, str]
) -> Result:
    """Run one contender: wall time; CPU and peak memory of its whole process tree."""
    print(f"  running {name} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        sampler = TreeSampler(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        helpers_cpu = sampler.stop()
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if code != 0:
        raise SystemExit(f"{name} failed ({code}):\n{stderr[-3000:]}")
    counts = json.loads(stdout.strip().splitlines()[-1])
    return Result(
        name=name,
        indicators=indicators,
        seconds=seconds,
        cpu=usage.ru_utime + usage.ru_stime + helpers_cpu,
        peak_rss_mb=usage.ru_maxrss / 1024,
        peak_tree_mb=max(sampler.peak_pss_mb, usage.ru_maxrss / 1024),
        blocks=counts["blocks"],
        read=counts.get("read", counts["observables"]),
        observables=counts["observables"],
        store_mb=store_mb(db_path),
    )


def feedgate_command(hub: Hub, db_path: Path) -> list[str]:
    return [sys.executable, "-c", FEEDGATE, *hub.args(db_path), str(SEGMENT_DAYS)]


def table(results: list[Result]) -> None:
    print(
        f"{'contender':<34}{'indicators':>11}{'seconds':>9}{'ind/s':>9}{'obs read':>10}"
        f"{'obs read/s':>11}{'stored':>9}{'CPU s':>8}{'RSS MB':>8}{'tree MB':>9}{'store MB':>10}"
    )
    for r in results:
        print(
            f"{r.name:<34}{r.indicators:>11,}{r.seconds:>9.2f}{r.rate:>9,.0f}"
            f"{r.read:>10,}{r.obs_rate:>11,.0f}{r.observables:>9,}{r.cpu:>8.2f}{r.peak_rss_mb:>8.1f}"
            f"{r.peak_tree_mb:>9.1f}"
            f"{r.store_mb:>10.1f}"
        )


def prepare(workdir: Path, indicators: int) -> Hub:
    print(f"seeding a hub with {indicators:,} indicators ...", file=sys.stderr, flush=True)
    hub = Hub(workdir, indicators)
    print(f"  seeded in {hub.seed_seconds:.1f} s; warming up ...", file=sys.stderr, flush=True)
    try:
        blocks, seconds = hub.warm_up()
    except BaseException:
        hub.stop()
        raise
    if blocks != hub.pulses:
        print(f"  warning: warm-up got {blocks} blocks of {hub.pulses}", file=sys.stderr)
    print(
        f"hub: {hub.pulses:,} pulses × {PER_PULSE} = {hub.indicators:,} indicators; warm-up poll "
        f"(renders and keeps every package) {seconds:.1f} s — the timed polls below hit a warm hub"
    )
    return hub


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indicators", type=int, default=200_000, help="for the comparison")
    parser.add_argument(
        "--large-indicators", type=int, default=1_000_000, help="for feedgate alone at scale"
    )
    parser.add_argument("--quick", action="store_true", help="skip the run at scale")
    args = parser.parse_args()
    venv = build_peers_venv(log=lambda line: print(line, file=sys.stderr))
    env = cabby_env()
    with tempfile.TemporaryDirectory(prefix="feedgate-ingest-") as tmp:
        workdir = Path(tmp)
        hub = prepare(workdir, args.indicators)
        try:
            anchor_db, ours_db = workdir / "anchor.db", workdir / "feedgate.db"
            anchor = run(
                "cabby + python-stix + sqlite3",
                [str(venv.python), "-c", ANCHOR, *hub.args(anchor_db)],
                anchor_db,
                hub.indicators,
                env,
            )
            ours = run(
                "feedgate poll_source", feedgate_command(hub, ours_db), ours_db, hub.indicators, env
            )
        finally:
            hub.stop()
        print(f"\npoll + parse + store of {hub.indicators:,} indicators, one process each")
        table([anchor, ours])
        print(
            f"\nfeedgate vs the anchor pipeline: {ours.rate / anchor.rate:.1f}x the indicators/s, "
            f"{anchor.cpu / max(ours.cpu, 1e-9):.1f}x less CPU; peak memory (whole process tree) "
            f"{ours.peak_tree_mb:.0f} MB against {anchor.peak_tree_mb:.0f} MB"
        )
        print(f"blocks: anchor {anchor.blocks:,}, feedgate {ours.blocks:,} (pulses {hub.pulses:,})")
        print(
            f"(a child's peak RSS is never below its launcher's RSS at the fork: "
            f"this launcher's peak is {_own_peak_mb():.0f} MB)"
        )
        if args.quick:
            return 0
        for path in workdir.glob("*.db*"):
            path.unlink()
        print()
        large = prepare(workdir, args.large_indicators)
        try:
            big_db = workdir / "feedgate-large.db"
            big = run(
                "feedgate poll_source (at scale)",
                feedgate_command(large, big_db),
                big_db,
                large.indicators,
                env,
            )
        finally:
            large.stop()
        print(f"\nfeedgate alone on {large.indicators:,} indicators")
        table([big])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
