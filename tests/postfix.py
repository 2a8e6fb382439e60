"""A real Postfix for the mail tests: a throw-away instance per test, and a sink it delivers to.

Debian's Postfix (``make test`` installs it as root with the debconf "No configuration"
preseed, so the machine gets no system instance; see the Makefile's ``sysdeps``) runs here as
an instance of its own: its ``main.cf``/``master.cf``, queue and data directories in a
temporary directory, its SMTP ports on free loopback ports chosen before the files are
written, its log in that directory (``maillog``). It relays everything to ``relayhost =
[127.0.0.1]:SINK``, an aiosmtpd :class:`Sink` in the test process that keeps every message it
is given, so a test can count what arrived.

Two ways of putting a filter in front of delivery (the two a Postfix admin has):

- **milter** (``milter="inet:127.0.0.1:PORT"``): ``smtpd_milters``, protocol 6, and
  ``milter_default_action = tempfail``, so a milter that is down or fails makes Postfix answer
  451 and keep nothing (the sender retries);
- **content filter** (``content_filter=PORT``): after queue, Postfix hands each message to
  ``[127.0.0.1]:PORT`` over SMTP (the ``scan`` transport, per FILTER_README's advanced content
  filter) and the filter sends it back to the reinjection smtpd on :attr:`Postfix.reinject_port`
  (no filter, no milter there), from which it goes to the sink. A filter that is down leaves
  the mail deferred in the queue; Postfix retries it every second or two here
  (``queue_run_delay``/backoff times are short), or at once after :meth:`Postfix.flush`.

With ``release_port``, the instance also runs the README's release port beside a milter: an
smtpd on that port without milters, where feedgate releases what the milter quarantined (the
milter's own port would scan the message again and quarantine it anew). The caller chooses the
port, because ``feedgate milter --relay`` must be told it before Postfix starts.

Starting takes about half a second: ``postfix start`` runs its checks (permissions, queue
directories), then the master, which binds the ports before ``start`` returns. (The
configuration files are dated a minute back: Postfix pauses until a file changed within the
last second "cools down", which cost two seconds per start.) Teardown stops
the instance with ``postfix stop``, then makes sure the master and every child it had are gone
(SIGKILL by process id after a deadline), whatever the test did.

Fixtures: ``sink`` (a running :class:`Sink`), ``postfix_factory`` (``start(**options) ->
Postfix``; everything it started is stopped at teardown). Without Postfix (or not as root: the
master must start as root to drop to the ``postfix`` user) a test that needs it is skipped
loudly, or fails under FEEDGATE_REQUIRE_ALL=1 (``peers.require``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest

from peers import require

POSTFIX = Path("/usr/sbin/postfix")
POSTQUEUE = Path("/usr/sbin/postqueue")
POSTSUPER = Path("/usr/sbin/postsuper")
POSTCAT = Path("/usr/sbin/postcat")
#: The name the instance gives itself; the sink must greet with another, or Postfix sees its
#: own name in the relay's greeting and refuses to deliver ("mail loops back to myself").
HOSTNAME = "postfix.feedgate.test"
SINK_HOSTNAME = "sink.feedgate.test"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


class PostfixUnavailable(RuntimeError):
    """Postfix cannot run here; the message says why."""


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 20.0, every: float = 0.05
) -> T:
    """Poll ``check`` until it returns something other than None/False, at most ``timeout``
    seconds; ``AssertionError`` naming ``what`` when it never does. (No fixed sleeps: mail
    moves when it moves, and a test waits for exactly that.)"""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- the sink -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """One message as the sink received it: the envelope and the bytes, as sent."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)


class Sink:
    """An aiosmtpd server on a free loopback port that accepts everything and keeps it.

    ``refuse`` (an SMTP reply such as ``"451 4.3.0 try later"``) makes it refuse DATA, for
    tests of a relay that says no."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._messages: list[Delivered] = []
        self.refuse: str | None = None
        self.port = 0
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                if sink.refuse is not None:
                    return sink.refuse
                sink._keep(
                    Delivered(
                        envelope.mail_from or "",
                        tuple(envelope.rcpt_tos),
                        bytes(envelope.original_content or b""),
                    )
                )
                return "250 2.0.0 Ok: kept by the sink"

        last: OSError | None = None
        for _ in range(5):  # a free port can be taken before we bind it
            self.port = free_port()
            controller = Controller(
                Handler(),
                hostname="127.0.0.1",
                port=self.port,
                server_hostname=SINK_HOSTNAME,
                data_size_limit=None,
                ready_timeout=10.0,
            )
            try:
                controller.start()
            except (OSError, RuntimeError) as exc:
                last = OSError(str(exc))
                continue
            self._controller = controller
            return
        raise PostfixUnavailable(f"cannot start the sink: {last}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _keep(self, message: Delivered) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    @property
    def messages(self) -> list[Delivered]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget what arrived so far (a test sharing the sink starts from nothing)."""
        with self._lock:
            self._messages.clear()

    def wait_count(self, count: int, timeout: float = 20.0) -> list[Delivered]:
        """The messages once at least ``count`` arrived (``AssertionError`` after
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f} s waiting for {count} messages at the"
                        f" sink; it has {len(self._messages)}"
                    )
                self._lock.wait(left)
            return list(self._messages)

    def with_header(self, name: str, value: str) -> list[Delivered]:
        """The delivered messages whose header ``name`` is ``value``."""
        return [m for m in self.messages if m.header(name) == value]


# --- the Postfix instance -----------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """One message in Postfix's queue (a line of ``postqueue -j``)."""

    queue_name: str  # incoming | active | deferred | hold | maildrop
    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    reasons: tuple[str, ...]

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Queued:
        recipients = row.get("recipients", [])
        return cls(
            str(row["queue_name"]),
            str(row["queue_id"]),
            str(row.get("sender", "")),
            tuple(str(r["address"]) for r in recipients),
            tuple(str(r["delay_reason"]) for r in recipients if r.get("delay_reason")),
        )


_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class Postfix:
    """One running instance. ``port`` is its smtpd (where tests send mail); ``reinject_port``
    the content filter's way back in (0 without a content filter); ``release_port`` an smtpd
    without milters (0: none)."""

    root: Path
    port: int
    sink_port: int
    milter: str | None = None
    content_filter: int | None = None
    reinject_port: int = 0
    release_port: int = 0
    main_extra: Mapping[str, str] = field(default_factory=dict)
    _master_pid: int | None = None

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    # --- configuration ------------------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.root / "data"),
            "meta_directory": "/etc/postfix",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": f"postfix-{self.root.name}",
            "myhostname": HOSTNAME,
            "mydomain": "feedgate.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "notify_classes": "",  # nothing but the tests' own mail reaches the sink
            "smtp_host_lookup": "native",
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtpd_error_sleep_time": "0",  # a reject or tempfail answers at once
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "in_flow_delay": "0",
            # A deferred message is tried again within a second or two.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "delay_warning_time": "0",
            "message_size_limit": str(80 * 2**20),
            "mailbox_size_limit": "0",
        }
        if self.milter is not None:
            settings |= {
                "smtpd_milters": self.milter,
                "milter_protocol": "6",
                "milter_default_action": "tempfail",
                "milter_connect_timeout": "5s",
                "milter_command_timeout": "30s",
                "milter_content_timeout": "60s",
                "milter_end_of_data_macros": "i",
            }
        if self.content_filter is not None:
            settings |= {
                "content_filter": f"scan:[127.0.0.1]:{self.content_filter}",
                "receive_override_options": "no_address_mappings",
            }
        return settings | dict(self.main_extra)

    def master_cf(self) -> str:
        lines = [f"127.0.0.1:{self.port} inet n - n - - smtpd", _MASTER_SERVICES]
        if self.content_filter is not None:
            lines += [
                # FILTER_README, "advanced content filter": out to the filter over SMTP ...
                "scan      unix  -       -       n       -       10      smtp",
                "  -o smtp_send_xforward_command=yes",
                "  -o disable_mime_output_conversion=yes",
                "  -o smtp_connect_timeout=2s",
                # ... and back in here, where nothing filters it again.
                f"127.0.0.1:{self.reinject_port} inet n - n - - smtpd",
                "  -o content_filter=",
                "  -o receive_override_options="
                "no_unknown_recipient_checks,no_header_body_checks,no_milters",
                "  -o smtpd_milters=",
                "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8",
                "  -o mynetworks=127.0.0.0/8",
                "  -o smtpd_client_restrictions=",
                "  -o smtpd_helo_restrictions=",
                "  -o smtpd_sender_restrictions=",
                "  -o smtpd_recipient_restrictions=permit_mynetworks,reject",
                "  -o smtpd_relay_restrictions=permit_mynetworks,reject",
            ]
        if self.release_port:
            lines += [  # the README's release port, as it is written there
                f"127.0.0.1:{self.release_port} inet n - n - - smtpd",
                "  -o smtpd_milters=",
                "  -o mynetworks=127.0.0.0/8",
                "  -o smtpd_recipient_restrictions=permit_mynetworks,reject",
            ]
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        account = pwd.getpwnam("postfix")
        self.conf.mkdir(mode=0o755)
        self.queue.mkdir(mode=0o755)
        data = self.root / "data"
        data.mkdir(mode=0o700)
        os.chown(data, account.pw_uid, account.pw_gid)
        main = "".join(f"{key} = {value}\n" for key, value in self.main_cf().items())
        (self.conf / "main.cf").write_text(main)
        (self.conf / "master.cf").write_text(self.master_cf())
        # Postfix pauses (300 ms at a time) reading a file changed within the last second, to
        # let it "cool down": date the files a minute back and start at once.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.conf / name, (past, past))
        self.maillog.touch()

    # --- commands -----------------------------------------------------------------------

    def run(self, command: Path | str, *args: str, timeout: float = 30.0) -> str:
        """Run one of Postfix's commands on this instance (``-c CONF``); its stdout, or
        ``PostfixUnavailable`` with its stderr and the log's tail."""
        done = subprocess.run(
            [str(command), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
        if done.returncode != 0:
            raise PostfixUnavailable(
                f"{Path(str(command)).name} {' '.join(args)} failed ({done.returncode}):"
                f" {done.stderr.strip() or done.stdout.strip()}\n{self.log_tail()}"
            )
        return done.stdout

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.maillog.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> None:
        self._write_config()
        self.run(POSTFIX, "start", timeout=START_TIMEOUT)
        self._master_pid = self.master_pid()
        if self._master_pid is None:
            raise PostfixUnavailable(f"postfix start left no master.pid\n{self.log_tail()}")
        wait_for("Postfix's smtpd greeting", self._greets, timeout=START_TIMEOUT)

    def _greets(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                code, _ = client.noop()
                return code == 250
        except (OSError, smtplib.SMTPException):
            return False

    def master_pid(self) -> int | None:
        try:
            text = (self.queue / "pid" / "master.pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self) -> None:
        """Stop the instance and make sure the master and all its daemons are gone (SIGKILL,
        by process id, for any still there after ``STOP_TIMEOUT``)."""
        master = self._master_pid or self.master_pid()
        if master is None:
            return
        before = _instance_pids(self.conf)
        with contextlib.suppress(PostfixUnavailable, subprocess.TimeoutExpired):
            self.run(POSTFIX, "stop", timeout=STOP_TIMEOUT)
        pids = sorted({master, *before, *_instance_pids(self.conf)})
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_for("Postfix's processes to end", lambda: not any(alive(p) for p in pids), 10.0)
        self._master_pid = None

    # --- the queue ----------------------------------------------------------------------

    def queued(self) -> list[Queued]:
        """Every message in the queue now (``postqueue -j``), hold included."""
        out = self.run(POSTQUEUE, "-j")
        return [Queued.from_json(json.loads(line)) for line in out.splitlines() if line.strip()]

    def held(self) -> list[Queued]:
        return [q for q in self.queued() if q.queue_name == "hold"]

    def message_id(self, queue_id: str) -> str | None:
        """The Message-ID of the queued message ``queue_id`` (``postcat -h``: its headers),
        None when it has none."""
        for line in self.run(POSTCAT, "-h", "-q", queue_id).splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == "message-id":
                return value.strip() or None
        return None

    def flush(self) -> None:
        """Try every deferred message again now (``postqueue -f``)."""
        self.run(POSTQUEUE, "-f")

    def wait_queue_empty(self, timeout: float = 20.0) -> None:
        wait_for("Postfix's queue to empty", lambda: not self.queued(), timeout)

    def delete_all(self) -> None:
        self.run(POSTSUPER, "-d", "ALL")

    def log_lines(self, text: str) -> list[str]:
        """The lines of this instance's log that contain ``text``."""
        return [line for line in self.log_tail(10**8).splitlines() if text in line]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _instance_pids(conf: Path) -> set[int]:
    """The processes of the instance configured in ``conf``: the master and every daemon it
    started carry ``MAIL_CONFIG=conf`` in their environment (so does nothing else)."""
    mark = f"MAIL_CONFIG={conf}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in environ.split(b"\0"):
            found.add(int(entry.name))
    return found


def unavailable_reason() -> str | None:
    """Why no Postfix instance can run here, or None when one can."""
    if not POSTFIX.exists():
        return (
            "Postfix is not installed (no /usr/sbin/postfix); `make test` installs it with apt"
            " when run as root (Makefile: sysdeps)"
        )
    if os.geteuid() != 0:
        return "the Postfix tests run a Postfix instance, whose master must start as root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no 'postfix' user (Debian's postfix package creates it)"
    return None


def start_postfix(
    sink_port: int,
    *,
    milter: str | None = None,
    content_filter: int | None = None,
    main_extra: Mapping[str, str] | None = None,
    release_port: int = 0,
) -> Postfix:
    """A started instance relaying to ``[127.0.0.1]:sink_port`` (``PostfixUnavailable`` when
    it cannot start; nothing is left running then); ``release_port`` (module doc) when not
    0."""
    reason = unavailable_reason()
    if reason is not None:
        raise PostfixUnavailable(reason)
    # Not under pytest's basetemp (0700 root): the postfix user must traverse to its queue.
    base = Path(tempfile.gettempdir())
    if not all(p.stat().st_mode & 0o001 for p in (base, *base.parents)):
        base = Path("/tmp")
    last: PostfixUnavailable | None = None
    for _ in range(3):  # a free port can be taken before the master binds it
        root = Path(tempfile.mkdtemp(prefix="feedgate-postfix-", dir=base))
        root.chmod(0o755)
        instance = Postfix(
            root,
            port=free_port(),
            sink_port=sink_port,
            milter=milter,
            content_filter=content_filter,
            reinject_port=free_port() if content_filter is not None else 0,
            release_port=release_port,
            main_extra=dict(main_extra or {}),
        )
        try:
            instance.start()
        except BaseException as exc:
            instance.stop()
            shutil.rmtree(root, ignore_errors=True)
            if not isinstance(exc, PostfixUnavailable):
                raise
            last = exc
            continue
        return instance
    assert last is not None
    raise last


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A running :class:`Sink` (what a Postfix instance here delivers to)."""
    reason = unavailable_reason()
    if reason is not None:
        require(reason)
    server = Sink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


PostfixFactory = Callable[..., Postfix]


@pytest.fixture
def postfix_factory(sink: Sink) -> Iterator[PostfixFactory]:
    """``start(milter=..., content_filter=..., main_extra=..., release_port=...) -> Postfix``:
    instances that deliver to ``sink``, all stopped (processes gone) and removed at teardown.
    A failure to start fails the test with Postfix's own words and log."""
    started: list[Postfix] = []

    def start(**options: Any) -> Postfix:
        try:
            instance = start_postfix(sink.port, **options)
        except PostfixUnavailable as exc:
            pytest.fail(f"cannot start Postfix: {exc}", pytrace=False)
        started.append(instance)
        return instance

    try:
        yield start
    finally:
        for instance in started:
            try:
                instance.stop()
            finally:
                shutil.rmtree(instance.root, ignore_errors=True)


def send(
    port: int,
    mail_from: str,
    rcpt_tos: list[str],
    content: bytes,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """Send one message over SMTP; the reply to DATA as ``(code, text)``, or the refusal of
    the first command that refused (RCPT refusals of all recipients included)."""
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        client.ehlo("client.feedgate.test")
        code, text = client.mail(mail_from)
        if code != 250:
            return code, text
        accepted = 0
        last: tuple[int, bytes] = (0, b"")
        for rcpt in rcpt_tos:
            last = client.rcpt(rcpt)
            accepted += last[0] in (250, 251)
        if not accepted:
            return last
        code, text = client.data(content)
        return code, text
