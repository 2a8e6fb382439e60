"""Real TAXII 1.x peers for interop tests: cabby 0.1.23 and OpenTAXII 0.9.3 (pytest plugin).

The peers and their old pinned dependencies live in a virtualenv of their own,
`.cache/peers/venv`, built once from tests/data/peers/requirements.txt and rebuilt when that
file (or the base Python) changes. `make peers` builds it; so does the first test that needs it.

Loaded by tests/conftest.py (`pytest_plugins = ["peers"]`). Fixtures (all session-scoped):

- `peers_venv`: a `PeersVenv` (`.python`, `.bin(name)`, `.run(args)`). If it cannot be built the
  test is skipped loudly, or fails under FEEDGATE_REQUIRE_ALL=1 (see `require`).
- `opentaxii`: an `OpenTaxiiServer` over plain HTTP on 127.0.0.1 and a free port.
- `opentaxii_tls`: the same data served over HTTPS that requires a client certificate; its
  `.tls` holds the CA, client certificate and keys (`TlsFiles`).
- `run_cabby`: `run_cabby("taxii-poll", *args)` runs a cabby CLI from the peers venv.

Both servers share one SQLite database in a temporary directory (set up by the internal
`opentaxii_data` fixture), so they serve the same content. Its fixed content:

- `collection-a`: the 7 STIX 1.1.1 packages of COLLECTION_A_FILES (tests/data/stix1), one day
  apart from 2024-01-01T00:00:00Z (`server.collection_a_blocks`). Never push into it.
- `empty-collection`: always empty (no inbox service is attached).
- `big`: empty unless FEEDGATE_OPENTAXII_BIG=N preloads N generated blocks; `load_blocks`
  adds more. Do not assume its count.
- `inbox-target`: where push tests send content. `stix-only`: a data set that accepts only
  STIX 1.1.1 content.

Nothing here uses a fixed port, talks to anything but 127.0.0.1, or reads ../shared.

    python tests/peers.py build [--force]    # what `make peers` runs
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import hashlib
import http.client
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS_DATA = ROOT / "tests" / "data" / "peers"
STIX1_DATA = ROOT / "tests" / "data" / "stix1"
REQUIREMENTS = PEERS_DATA / "requirements.txt"
CACHE = ROOT / ".cache" / "peers"
VENV_DIR = CACHE / "venv"
BUILD_LOG = CACHE / "build.log"
STAMP_NAME = ".feedgate-peers-stamp"

CABBY_COMMANDS = (
    "taxii-discovery",
    "taxii-collections",
    "taxii-poll",
    "taxii-push",
    "taxii-subscription",
    "taxii-proxy",
)

# collection-a: small real STIX 1.1.1 packages, in timestamp order.
COLLECTION_A_FILES = (
    "stixschemas-1.1.1_STIX_Domain_Watchlist.xml",
    "stixschemas-1.1.1_STIX_URL_Watchlist.xml",
    "stixschemas-1.1.1_STIX_IP_Watchlist.xml",
    "stixschemas-1.1.1_STIX_FileHash_Watchlist.xml",
    "cbtaxii_hat_dns_example.xml",
    "stixschemas-1.1.1_STIX_Email_wLink.xml",
    "misp-stix_test_event2_stix11.xml",
)  # STIX 1.1.1, distinct package ids
COLLECTION_A_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
COLLECTION_A_STEP = dt.timedelta(days=1)

CB_STIX_XML_111 = "urn:stix.mitre.org:xml:1.1.1"
XML_11_BINDING = "urn:taxii.mitre.org:message:xml:1.1"
SERVICES_11 = "urn:taxii.mitre.org:services:1.1"
HTTP_PROTOCOL = "urn:taxii.mitre.org:protocol:http:1.0"
HTTPS_PROTOCOL = "urn:taxii.mitre.org:protocol:https:1.0"

START_TIMEOUT = 60.0


# --- skip or fail ------------------------------------------------------------------------------


def require(reason: str) -> NoReturn:
    """Skip the calling test loudly because something it needs is missing; under
    FEEDGATE_REQUIRE_ALL=1 (CI) fail it instead, since CI must run everything."""
    if os.environ.get("FEEDGATE_REQUIRE_ALL") == "1":
        pytest.fail(f"FEEDGATE_REQUIRE_ALL=1 and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(f"!!! NOT TESTED: {reason}")


# --- the peers virtualenv ----------------------------------------------------------------------


class PeersBuildError(RuntimeError):
    """The peers virtualenv could not be built (the message says why; BUILD_LOG has more)."""


@dataclass(frozen=True)
class PeersVenv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def run(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's python with `args` (text mode, output captured)."""
        return subprocess.run(
            [str(self.python), *map(str, args)],
            env=dict(env) if env is not None else None,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


def venv_stamp(requirements: Path = REQUIREMENTS) -> str:
    """What the venv was built from: the pinned requirements and the base Python."""
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    digest.update(f"\0{platform.python_version()}\0{os.path.realpath(sys.base_prefix)}".encode())
    return digest.hexdigest()


def _venv_is_current(venv_dir: Path, stamp: str) -> bool:
    stamp_file = venv_dir / STAMP_NAME
    return (
        stamp_file.is_file()
        and stamp_file.read_text().strip() == stamp
        and (venv_dir / "bin" / "python").exists()
    )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_peers_venv(
    venv_dir: Path = VENV_DIR,
    *,
    requirements: Path = REQUIREMENTS,
    force: bool = False,
    log: Callable[[str], None] = lambda _line: None,
) -> PeersVenv:
    """Return the peers venv, building it first when missing or out of date.

    Raises PeersBuildError when it cannot be built; the build's output is in build.log beside
    the venv (BUILD_LOG for the default one).
    """
    stamp = venv_stamp(requirements)
    venv = PeersVenv(venv_dir)
    build_log = venv_dir.parent / BUILD_LOG.name
    with _lock(venv_dir.parent / ".lock"):
        if not force and _venv_is_current(venv_dir, stamp):
            return venv
        log(f"building the peers virtualenv in {venv_dir} (log: {build_log})")
        began = time.monotonic()
        shutil.rmtree(venv_dir, ignore_errors=True)
        pip = [str(venv.python), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        steps: list[tuple[str, list[str], float]] = [
            ("create the venv", [sys.executable, "-m", "venv", str(venv_dir)], 300),
            (
                "install the pinned requirements",
                [*pip, "install", "--no-deps", "-r", str(requirements)],
                1200,
            ),
            ("check that the pins are complete", [*pip, "check"], 120),
            (
                "import the peers",
                [
                    str(venv.python),
                    "-c",
                    "import cabby, opentaxii, stix, cybox, libtaxii, gunicorn, cryptography",
                ],
                120,
            ),
            ("run taxii-poll --help", [str(venv.bin("taxii-poll")), "--help"], 60),
            ("run gunicorn --version", [str(venv.bin("gunicorn")), "--version"], 60),
        ]
        with build_log.open("w") as out:
            for what, command, timeout in steps:
                out.write(f"$ {' '.join(command)}\n")
                out.flush()
                try:
                    done = subprocess.run(
                        command,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=timeout,
                        check=False,
                        env=_without_opentaxii_env(os.environ),
                    )
                except (OSError, subprocess.TimeoutExpired) as error:
                    raise PeersBuildError(f"could not {what}: {error}") from error
                if done.returncode != 0:
                    tail = build_log.read_text(errors="replace").strip().splitlines()[-1:]
                    raise PeersBuildError(
                        f"could not {what} (exit {done.returncode}): {' '.join(tail)}"
                    )
            out.write(f"built in {time.monotonic() - began:.1f} s\n")
        (venv_dir / STAMP_NAME).write_text(stamp + "\n")
        log(f"peers virtualenv built in {time.monotonic() - began:.1f} s")
    return venv


_build_failure: str | None = None


@pytest.fixture(scope="session")
def peers_venv() -> PeersVenv:
    global _build_failure
    if _build_failure is None:
        try:
            return build_peers_venv()
        except PeersBuildError as error:
            _build_failure = f"the peers virtualenv (cabby, OpenTAXII) cannot be built: {error}"
            _build_failure += f" (see {BUILD_LOG}; `make peers` retries)"
    require(_build_failure)


# --- cabby -------------------------------------------------------------------------------------


def cabby_env(
    *, keep_ca_env: bool = False, extra: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """The environment the cabby CLIs run in.

    - NO_COLOR=1: cabby logs to stderr through colorlog, which colours even when not on a TTY.
    - REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are removed unless keep_ca_env: requests lets them
      override cabby's own --ca-cert, --verify PATH and even --verify no, so with them set cabby
      cannot reach a server signed by a private CA.
    - NO_PROXY covers 127.0.0.1 and localhost.
    """
    env = _without_opentaxii_env(os.environ)
    env["NO_COLOR"] = "1"
    if not keep_ca_env:
        env.pop("REQUESTS_CA_BUNDLE", None)
        env.pop("CURL_CA_BUNDLE", None)
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name, ""), "127.0.0.1", "localhost"]))
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class RunCabby:
    """Call with a cabby command name and its arguments; returns the CompletedProcess (text).

    cabby exits 0 even when the request failed (it logs `ERROR: ...` on stderr); exit 1 only for
    missing --discovery/--path, exit 2 for argparse errors. Check stderr, not only returncode.
    """

    def __init__(self, venv: PeersVenv) -> None:
        self.venv = venv

    def __call__(
        self,
        command: str,
        *args: str | os.PathLike[str],
        timeout: float = 60.0,
        keep_ca_env: bool = False,
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if command not in CABBY_COMMANDS:
            raise ValueError(f"not a cabby command: {command!r} (one of {CABBY_COMMANDS})")
        argv = [str(self.venv.bin(command)), *map(str, args)]
        try:
            return subprocess.run(
                argv,
                env=cabby_env(keep_ca_env=keep_ca_env, extra=env),
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(
                f"{command} took more than {timeout} s: {argv}\n"
                f"stdout: {_text(error.stdout)[-2000:]}\nstderr: {_text(error.stderr)[-2000:]}"
            )


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


@pytest.fixture(scope="session")
def run_cabby(peers_venv: PeersVenv) -> RunCabby:
    return RunCabby(peers_venv)


# --- OpenTAXII ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededBlock:
    timestamp: dt.datetime  # its timestamp label (UTC)
    path: Path  # the file its content came from
    package_id: str  # the STIX_Package's id attribute


def _package_id(path: Path) -> str:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return str(etree.parse(str(path), parser).getroot().get("id"))


@dataclass(frozen=True)
class TlsFiles:
    """A test PKI written by tests/data/peers/make_certs.py. PEM files; keys are PKCS#8."""

    dir: Path
    ca: Path  # the CA that signed server and client certificates
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # unencrypted
    client_key_encrypted: Path  # the same key, encrypted with client_key_password
    client_key_password: str
    other_ca: Path  # a CA that signed nothing here

    @classmethod
    def create(cls, directory: Path, venv: PeersVenv | None = None) -> TlsFiles:
        """Write a fresh PKI into directory, with this Python when it has `cryptography`,
        else with the peers venv's."""
        password = "feedgate-test-key-password"
        script = PEERS_DATA / "make_certs.py"
        if importlib.util.find_spec("cryptography") is not None:
            python = sys.executable
        elif venv is not None:
            python = str(venv.python)
        else:
            raise RuntimeError("no Python with `cryptography` to write the test PKI with")
        subprocess.run(
            [python, str(script), str(directory), password],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return cls(
            dir=directory,
            ca=directory / "ca.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
            client_cert=directory / "client.pem",
            client_key=directory / "client.key",
            client_key_encrypted=directory / "client-encrypted.key",
            client_key_password=password,
            other_ca=directory / "other-ca.pem",
        )

    def client_context(self, *, cert: bool = True, encrypted: bool = False) -> ssl.SSLContext:
        """An ssl context that trusts only the test CA and (by default) presents the client
        certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert:
            if encrypted:
                context.load_cert_chain(
                    str(self.client_cert),
                    str(self.client_key_encrypted),
                    password=self.client_key_password,
                )
            else:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@dataclass(frozen=True)
class OpenTaxiiData:
    """The shared working directory of the OpenTAXII servers: config and SQLite databases."""

    venv: PeersVenv
    workdir: Path
    config_path: Path
    data_db: Path
    auth_db: Path
    collection_a_blocks: tuple[SeededBlock, ...]

    def env(self, port: int | None = None) -> dict[str, str]:
        env = _without_opentaxii_env(os.environ)
        env["OPENTAXII_CONFIG"] = str(self.config_path)
        if port is not None:
            env["OPENTAXII_DOMAIN"] = f"127.0.0.1:{port}"
        return env

    def run_tool(self, job: Mapping[str, Any], *, timeout: float = 600.0) -> dict[str, Any]:
        """Run tests/data/peers/opentaxii_tool.py in the peers venv on this database."""
        try:
            done = self.venv.run(
                [PEERS_DATA / "opentaxii_tool.py"],
                env=self.env(),
                input=json.dumps(job),
                timeout=timeout,
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(
                f"opentaxii_tool.py failed (exit {error.returncode}):\n{error.stderr[-4000:]}"
            ) from error
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


@dataclass(frozen=True)
class OpenTaxiiServer:
    """A running OpenTAXII 0.9.3 (gunicorn, one worker with 4 threads) on 127.0.0.1.

    URL layout: every TAXII 1.x service is POST <base_url><path>; the discovery service needs no
    authentication, all others do (Basic `username:password`, or a JWT from jwt_auth_path sent as
    `Authorization: Bearer`). A failed authentication is HTTP 200 with a Status_Message of type
    UNAUTHORIZED, not a 401.
    """

    data: OpenTaxiiData
    host: str
    port: int
    scheme: str  # "http" or "https"
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    tls: TlsFiles | None = None

    username: str = "test"  # admin: reads and writes every collection
    password: str = "test"
    reader_username: str = "reader"  # may read collection-a only
    reader_password: str = "reader"

    discovery_path: str = "/services/discovery"
    collection_management_path: str = "/services/collection-management"
    inbox_path: str = "/services/inbox"
    inbox_10_path: str = "/services/inbox-10"  # TAXII 1.0 pushes: into inbox-target only
    poll_path: str = "/services/poll"  # 2 blocks per part
    poll_page_size: int = 2
    poll_big_path: str = "/services/poll-big"  # 1000 blocks per part
    poll_big_page_size: int = 1000
    jwt_auth_path: str = "/management/auth"  # POST {"username","password"} -> {"token"}
    counts_blocks: bool = False  # count_blocks_in_poll_responses: no Record_Count is sent

    collection_a: str = "collection-a"
    empty_collection: str = "empty-collection"
    big_collection: str = "big"
    inbox_collection: str = "inbox-target"
    stix_only_collection: str = "stix-only"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def poll_paths(self) -> dict[int, str]:
        """Poll service paths by page size."""
        return {self.poll_page_size: self.poll_path, self.poll_big_page_size: self.poll_big_path}

    @property
    def collection_a_blocks(self) -> tuple[SeededBlock, ...]:
        return self.data.collection_a_blocks

    @property
    def collection_a_count(self) -> int:
        return len(self.data.collection_a_blocks)

    def url(self, path: str) -> str:
        return self.base_url + path

    def cabby_args(
        self,
        path: str | None = None,
        *,
        discovery: bool = False,
        auth: bool = True,
        client_cert: bool = True,
    ) -> list[str]:
        """--host/--port (and --https with the test CA and, by default, the client certificate)
        plus --path (or --discovery) and Basic credentials: the flags cabby and our CLIs share."""
        args = ["--host", self.host, "--port", str(self.port)]
        if self.tls is not None:
            args += ["--https", "--ca-cert", str(self.tls.ca)]
            if client_cert:
                args += ["--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key)]
        if discovery:
            args += ["--discovery", self.discovery_path]
        elif path is not None:
            args += ["--path", path]
        if auth:
            args += ["--username", self.username, "--password", self.password]
        return args

    def log_text(self, since: int = 0) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(since)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        _stop(self.process)


@dataclass(frozen=True)
class LoadedBlocks:
    collection: str
    n: int
    first: dt.datetime | None  # timestamp label of the first block written
    last: dt.datetime | None  # and of the last (blocks are `step` apart)
    seconds: float
    volumes: dict[str, int]  # blocks per collection afterwards


def load_blocks(
    server: OpenTaxiiServer | OpenTaxiiData,
    collection: str,
    n: int,
    *,
    start: dt.datetime | None = None,
    step_seconds: float = 1.0,
) -> LoadedBlocks:
    """Insert n generated content blocks into a collection, fast (one transaction straight into
    OpenTAXII's persistence tables, run in the peers venv; not over HTTP). Each block is a small
    STIX 1.1.1 package with one IPv4 indicator (10.x.y.z, distinct per block). Timestamp labels
    are `start`, `start + step`, ...; by default they go on from the collection's newest block
    (or 2025-01-01T00:00:00Z). Times are stored in UTC: OpenTAXII on SQLite drops UTC offsets.
    """
    data = server.data if isinstance(server, OpenTaxiiServer) else server
    job: dict[str, Any] = {"collection": collection, "n": n, "step_seconds": step_seconds}
    if start is not None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        job["start"] = start.astimezone(dt.UTC).isoformat()
    result = data.run_tool({"load_blocks": [job]})
    loaded = result["load_blocks"][0]
    return LoadedBlocks(
        collection=collection,
        n=loaded["n"],
        first=dt.datetime.fromisoformat(loaded["first"]) if loaded["first"] else None,
        last=dt.datetime.fromisoformat(loaded["last"]) if loaded["last"] else None,
        seconds=loaded["seconds"],
        volumes=result["volumes"],
    )


def _without_opentaxii_env(environ: Mapping[str, str]) -> dict[str, str]:
    # OpenTAXII reads every OPENTAXII_* variable as configuration: pass only ours.
    return {k: v for k, v in environ.items() if not k.startswith("OPENTAXII_")}


def _server_config(workdir: Path) -> dict[str, Any]:
    return {
        "domain": "127.0.0.1:0",  # each server process sets OPENTAXII_DOMAIN to its own
        "support_basic_auth": True,
        "return_server_error_details": True,
        "auth_api": {
            "class": "opentaxii.auth.sqldb.SQLDatabaseAPI",
            "parameters": {
                "db_connection": f"sqlite:///{workdir / 'auth.db'}",
                "create_tables": True,
                "secret": "feedgate-tests-jwt-secret",
                "token_ttl_secs": 3600,
            },
        },
        "taxii1": {
            "save_raw_inbox_messages": True,
            "xml_parser_supports_huge_tree": True,
            "count_blocks_in_poll_responses": False,
            "unauthorized_status": "UNAUTHORIZED",
            "hooks": None,
            "persistence_api": {
                "class": "opentaxii.persistence.sqldb.SQLDatabaseAPI",
                "parameters": {
                    "db_connection": f"sqlite:///{workdir / 'data.db'}",
                    "create_tables": True,
                },
            },
        },
        "taxii2": None,
        "logging": {"opentaxii": "info", "root": "info"},
    }


def prepare_opentaxii(venv: PeersVenv, workdir: Path, *, big: int = 0) -> OpenTaxiiData:
    """Write the config (YAML is a superset of JSON), create the databases, sync services,
    collections and accounts, and seed collection-a (and `big` when big > 0)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "opentaxii.yml"
    config_path.write_text(json.dumps(_server_config(workdir), indent=2))
    blocks = tuple(
        SeededBlock(
            COLLECTION_A_START + i * COLLECTION_A_STEP,
            STIX1_DATA / name,
            _package_id(STIX1_DATA / name),
        )
        for i, name in enumerate(COLLECTION_A_FILES)
    )
    data = OpenTaxiiData(
        venv=venv,
        workdir=workdir,
        config_path=config_path,
        data_db=workdir / "data.db",
        auth_db=workdir / "auth.db",
        collection_a_blocks=blocks,
    )
    job: dict[str, Any] = {
        "sync": str(PEERS_DATA / "opentaxii-data.yml"),
        "load_files": [
            {
                "collection": "collection-a",
                "path": str(block.path),
                "timestamp": block.timestamp.isoformat(),
                "binding": CB_STIX_XML_111,
            }
            for block in blocks
        ],
    }
    if big > 0:
        job["load_blocks"] = [{"collection": "big", "n": big, "start": "2025-01-01T00:00:00+00:00"}]
    data.run_tool(job)
    return data


_RUNNING: list[OpenTaxiiServer] = []


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
    # Linux: the server dies with the test process even if pytest is killed outright.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_opentaxii(
    data: OpenTaxiiData, *, tls: TlsFiles | None = None, workers: int = 1
) -> OpenTaxiiServer:
    """Start gunicorn serving OpenTAXII on a socket bound here to 127.0.0.1:0 (passed as
    fd://N, so no port is ever guessed), and wait until it answers a Discovery_Request."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    scheme = "https" if tls else "http"
    log_path = data.workdir / f"gunicorn-{scheme}-{port}.log"
    command = [
        str(data.venv.bin("gunicorn")),
        "opentaxii.http:app",
        "--bind",
        f"fd://{listener.fileno()}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--timeout",
        "120",
        "--graceful-timeout",
        "3",
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
    ]
    if tls is not None:
        command += [
            "--certfile",
            str(tls.server_cert),
            "--keyfile",
            str(tls.server_key),
            "--ca-certs",
            str(tls.ca),
            "--cert-reqs",
            str(int(ssl.CERT_REQUIRED)),
        ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=data.workdir,
            env=data.env(port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
        )
    listener.close()
    server = OpenTaxiiServer(
        data=data,
        host="127.0.0.1",
        port=port,
        scheme=scheme,
        log_path=log_path,
        process=process,
        tls=tls,
    )
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    _RUNNING.append(server)
    return server


def discovery_request(
    server: OpenTaxiiServer, *, context: ssl.SSLContext | None = None, timeout: float = 10.0
) -> tuple[int, str]:
    """POST a TAXII 1.1 Discovery_Request with the standard headers; (HTTP status, body).
    Over TLS, `context` defaults to the test CA and the client certificate."""
    body = (
        '<taxii_11:Discovery_Request xmlns:taxii_11="http://taxii.mitre.org/messages/'
        'taxii_xml_binding-1.1" message_id="feedgate-ready"/>'
    )
    headers = {
        "Content-Type": "application/xml",
        "Accept": "application/xml",
        "X-TAXII-Content-Type": XML_11_BINDING,
        "X-TAXII-Accept": XML_11_BINDING,
        "X-TAXII-Services": SERVICES_11,
        "X-TAXII-Protocol": HTTPS_PROTOCOL if server.tls else HTTP_PROTOCOL,
    }
    connection: http.client.HTTPConnection
    if server.tls is not None:
        connection = http.client.HTTPSConnection(
            server.host,
            server.port,
            timeout=timeout,
            context=context or server.tls.client_context(),
        )
    else:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request("POST", server.discovery_path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def _wait_until_ready(server: OpenTaxiiServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"OpenTAXII (gunicorn) exited with {server.process.returncode} while starting; "
                f"log {server.log_path}:\n{server.log_text()[-6000:]}"
            )
        try:
            status, body = discovery_request(server, timeout=5.0)
            if status == 200 and "Discovery_Response" in body:
                return
            last_error = f"HTTP {status}: {body[:300]}"
        except (OSError, http.client.HTTPException) as error:
            last_error = repr(error)
        time.sleep(0.1)
    raise RuntimeError(
        f"OpenTAXII on {server.base_url} did not answer within {START_TIMEOUT} s ({last_error}); "
        f"log {server.log_path}:\n{server.log_text()[-6000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # gunicorn: quick shutdown
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def opentaxii_data(
    peers_venv: PeersVenv, tmp_path_factory: pytest.TempPathFactory
) -> OpenTaxiiData:
    big = int(os.environ.get("FEEDGATE_OPENTAXII_BIG", "0") or 0)
    return prepare_opentaxii(peers_venv, tmp_path_factory.mktemp("opentaxii"), big=big)


@pytest.fixture(scope="session")
def opentaxii(opentaxii_data: OpenTaxiiData) -> Iterator[OpenTaxiiServer]:
    server = start_opentaxii(opentaxii_data)
    try:
        yield server
    finally:
        server.stop()
        _RUNNING.remove(server)


@pytest.fixture(scope="session")
def opentaxii_tls(
    opentaxii_data: OpenTaxiiData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenTaxiiServer]:
    tls = TlsFiles.create(tmp_path_factory.mktemp("pki"), opentaxii_data.venv)
    server = start_opentaxii(opentaxii_data, tls=tls)
    try:
        yield server
    finally:
        server.stop()
        _RUNNING.remove(server)


# --- show the servers' logs when a test fails ---------------------------------------------------

_LOG_OFFSETS = pytest.StashKey[dict[Path, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_LOG_OFFSETS] = {server.log_path: server.log_size() for server in _RUNNING}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed or not _RUNNING:
        return report
    offsets = item.stash.get(_LOG_OFFSETS, {})
    for server in _RUNNING:
        lines = server.log_text(offsets.get(server.log_path, 0)).splitlines()[-80:]
        if lines:
            report.sections.append(
                (f"OpenTAXII {server.base_url} log ({server.log_path})", "\n".join(lines))
            )
    return report


# --- command line: `python tests/peers.py build` ----------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the peers virtualenv (cabby, OpenTAXII).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build it unless it is up to date")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    sub.add_parser("path", help="print its path")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(VENV_DIR)
        return 0
    try:
        venv = build_peers_venv(force=args.force, log=lambda line: print(line, flush=True))
    except PeersBuildError as error:
        strict = os.environ.get("FEEDGATE_REQUIRE_ALL") == "1"
        banner = "!" * 78
        print(
            f"{banner}\n!!! the peers virtualenv could not be built: {error}\n"
            f"!!! see {BUILD_LOG}\n"
            + (
                "!!! FEEDGATE_REQUIRE_ALL=1: failing.\n"
                if strict
                else "!!! the interop tests against cabby/OpenTAXII will be SKIPPED.\n"
            )
            + banner,
            file=sys.stderr,
        )
        return 1 if strict else 0
    print(f"peers virtualenv ready: {venv.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
