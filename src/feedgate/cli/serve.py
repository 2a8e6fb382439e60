"""``feedgate serve`` and ``feedgate up``: the long-running faces of the feed manager.

``serve`` runs the scheduler (polls what is due) and the REST API. ``up`` is the whole system on
the embedded default, for a first look: a hub seeded with demo pulses and served on
127.0.0.1, a user subscribed to its main author, a source pointing at it, one poll, then the
SMTP gateway on 127.0.0.1 (relaying to ``--relay``, or to a Maildir sink under the data
directory when there is no MTA, on the port after the gateway's: stable across restarts, since
quarantined messages record it as their relay), the scheduler and the API; it prints where
everything is.
Thin: the work is in feeds/, hub/, mail/, web/.

Threads: the API (uvicorn) stays in the main thread, where SIGINT/SIGTERM arrive and stop it;
the gateway and the sink run on their own asyncio loop in a thread
(:class:`feedgate.mail.gateway_thread.GatewayThread`), stopped when the API has stopped: the
ports closed, the worker processes shut down and waited for, the mail log closed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import fail, fail_because, listen, open_store
from .retro import RETRO_EVERY, retention_option
from .sources import lease_option

if TYPE_CHECKING:
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.store import FeedStore
    from feedgate.web.api_token import ApiToken

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])

_DB_HELP = "The manager's database: a SQLite path or postgresql:// URL [env: FEEDGATE_DB]."


def _token() -> ApiToken:
    """The API's token (:mod:`feedgate.web.api_token`), or one line and exit 1."""
    from feedgate.db import data_dir
    from feedgate.web.api_token import FILE_NAME, TokenError, api_token

    path = data_dir() / FILE_NAME
    try:
        return api_token(path)
    except TokenError as exc:
        fail(str(exc), exc)
    except OSError as exc:
        fail(f"API token file {path}: {exc.strerror or exc}", exc)


def _run_manager(
    store: FeedStore,
    feed_log: ThreatFeedLog,
    sock: socket.socket,
    token: ApiToken,
    tick: float,
    lease: timedelta | None = None,
    quarantine_days: int = 14,
    retention: timedelta | None = None,
    match_log_days: int = 14,
    first_admin: bool = False,
) -> None:
    """The scheduler, the retro-scan (mail index against each poll's new observables,
    expiring the index after ``retention``) and the quarantine's expiry (messages older than
    ``quarantine_days``, match log rows older than ``match_log_days``) in threads, and the API
    on ``sock`` in the foreground, with the web console at ``/``, until interrupted
    (``first_admin``: make the console's ``admin`` if there is no console user yet)."""
    from feedgate.asgi_server import base_url, serve
    from feedgate.feeds.console_users import ConsoleUsers
    from feedgate.feeds.scheduler import DEFAULT_LEASE, Scheduler
    from feedgate.mail.mailindex import DEFAULT_RETENTION, MailIndex
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.retro import RetroScanner
    from feedgate.web.api import create_api
    from feedgate.web.console import ConsoleContext, console_app

    from .admin import console_login

    url = base_url(sock)
    users = ConsoleUsers(store.engine)
    login = console_login(users, first_admin=first_admin)

    def ready() -> None:
        click.echo(f"console:   {url}/  ({login})")
        click.echo(f"API:       {url}/api/v1/  (OpenAPI: {url}/api/v1/openapi.json)")
        click.echo(f"API token: {token.shown}")
        sys.stdout.flush()

    stop = threading.Event()
    scheduler = Scheduler(store, feed_log, lease=lease or DEFAULT_LEASE)
    worker = threading.Thread(target=scheduler.run_forever, args=(stop, tick), daemon=True)
    worker.start()
    expiry = threading.Thread(
        target=_expire_quarantine,
        args=(store, quarantine_days, stop, match_log_days),
        daemon=True,
    )
    expiry.start()
    policy = PolicyStore(store.engine, store.source_names)
    retro = RetroScanner(
        store,
        policy,
        MailIndex(store.engine, retention=retention or DEFAULT_RETENTION),
        feed_log=feed_log,
    )
    retro_worker = threading.Thread(
        target=retro.run_forever, args=(stop, RETRO_EVERY), daemon=True, name="retro-scan"
    )
    retro_worker.start()
    try:
        api = create_api(store, feed_log, token.value, lease=scheduler.lease, policy=policy)
        console = ConsoleContext(store, feed_log, users, policy, lease=scheduler.lease)
        serve(console_app(console, api), sock, ready=ready)
    finally:
        stop.set()
        worker.join(timeout=30)
        retro_worker.join(timeout=30)


#: Seconds between quarantine expiries in ``serve`` (and ``up``).
QUARANTINE_EXPIRE_EVERY = 3600.0


def _expire_quarantine(
    store: FeedStore,
    days: int,
    stop: threading.Event,
    match_log_days: int = 14,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Delete quarantined messages past retention, and match log rows older than
    ``match_log_days`` (in batches: the gateway keeps writing meanwhile), now and every hour
    until ``stop`` (the gateway expires the quarantine too; either may run alone). Lives here:
    feeds never imports mail."""
    import logging

    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.quarantine import QuarantineStore

    quarantine = QuarantineStore(store.engine, retention=timedelta(days=days), now=now)
    policy = PolicyStore(store.engine, store.source_names)
    while True:
        try:
            quarantine.expire()
        except Exception:  # the database away for a while: try again next time
            logging.getLogger("feedgate.serve").exception("quarantine expiry failed")
        try:
            policy.expire_matches(now(), timedelta(days=match_log_days))
        except Exception:
            logging.getLogger("feedgate.serve").exception("match log expiry failed")
        if stop.wait(QUARANTINE_EXPIRE_EVERY):
            return


#: Scanning processes of the gateway that ``up`` runs (at most the CPU count): a demo's mail
#: needs no more, and each one is a Python process to spawn and warm before ``up`` is ready.
UP_GATEWAY_WORKERS = 2
#: The Maildir (under the data directory) that clean mail goes to when ``up`` has no --relay.
DELIVERED_DIR = "delivered"


def _relay_address(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    from feedgate.mail.relay import RelayAddressError, parse_address

    if value is None:
        return None
    try:
        return parse_address(value)
    except RelayAddressError as exc:
        raise click.BadParameter(str(exc)) from None


def _sink_socket(gateway_port: int) -> socket.socket:
    """The Maildir sink's listening socket: on the port after the gateway's (any free one
    with ``--gateway-port 0``). Stable, because each quarantined message records the relay
    it would have gone to, and a release after ``up`` restarted must find the sink there."""
    if gateway_port == 65535:
        raise click.BadParameter(
            "65535 leaves no port for the Maildir sink, which takes the next one: choose a"
            " lower port, or give --relay",
            param_hint="--gateway-port",
        )
    port = gateway_port + 1 if gateway_port else 0
    return listen(
        "127.0.0.1", port, option="--gateway-port", role="the Maildir sink: --gateway-port + 1"
    )


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _gateway(
    store: FeedStore,
    db: str,
    sock: socket.socket,
    relay: tuple[str, int] | None,
    sink_sock: socket.socket | None,
) -> Iterator[None]:
    """``up``'s SMTP gateway on ``sock`` for the block (its lines printed), relaying to
    ``relay`` or, without one, to a Maildir sink on ``sink_sock``; stopped at the end however
    the block ends. While its workers start, SIGTERM interrupts as Ctrl-C does (no default
    death that would leave the worker processes behind); the API's serve takes both over."""
    from feedgate.db import data_dir, display_name
    from feedgate.mail.gateway import Gateway, GatewayConfig
    from feedgate.mail.gateway_thread import GatewayThread
    from feedgate.mail.maildir_sink import Maildir, MaildirSink
    from feedgate.mail.maillog import MailLog, default_path
    from feedgate.mail.quarantine import QuarantineStore

    sink = maildir = None
    if relay is None:
        assert sink_sock is not None
        maildir = Maildir(data_dir() / DELIVERED_DIR)
        try:
            maildir.create()
        except OSError as exc:
            fail_because(f"cannot make the Maildir {maildir.path}", exc, "or give --relay")
        sink = MaildirSink(maildir, hostname="localhost")
        relay = sink_sock.getsockname()[:2]
    log_path = default_path()
    try:
        mail_log = MailLog(log_path)
    except OSError as exc:
        fail_because(f"cannot open the mail log {log_path}", exc)
    config = GatewayConfig(relay=relay, workers=min(UP_GATEWAY_WORKERS, os.cpu_count() or 1))
    gateway = Gateway(db, config, QuarantineStore(store.engine), mail_log)
    thread = GatewayThread(gateway, sock, sink=sink, sink_sock=sink_sock)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            thread.start()
        except Exception as exc:  # the workers could not open the database
            fail_because(f"the scanning workers cannot start on {display_name(db)}", exc)
        host, port = sock.getsockname()[:2]
        click.echo(
            f"gateway:   {host}:{port} -> relay {config.relay_text}"
            f"  (SMTP; {config.workers} scanning workers)"
        )
        if maildir is not None:
            click.echo(
                f"delivered: {maildir.new}/  (Maildir of the sink on {config.relay_text}:"
                " the mail that passed)"
            )
        click.echo(f"mail log:  {log_path}  (quarantined mail: feedgate quarantine list)")
        yield
    finally:
        thread.stop()
        mail_log.close()
        signal.signal(signal.SIGTERM, previous)


#: ``--match-log-days`` of ``serve`` and ``up``.
match_log_days_option = click.option(
    "--match-log-days",
    type=click.IntRange(1),
    default=14,
    show_default=True,
    help="Days the match log (feedgate hits) keeps a match (expired here every hour).",
)


def _port_option(help_: str) -> Callable[[F], F]:
    """``--port`` of the REST API, for ``serve`` and ``up`` alike."""
    return click.option(
        "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help=help_
    )


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address the REST API listens on (0.0.0.0 or :: for every interface).",
)
@_port_option("The REST API's port (0: any free port, said on start).")
@click.option(
    "--tick",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds between looks for due sources.",
)
@lease_option(
    "How long a node's claim on a source lasts unless renewed (renewed every third of it "
    "while polling): when a node dies mid-poll, another takes the source over after this"
)
@click.option(
    "--quarantine-days",
    type=click.IntRange(1),
    default=14,
    show_default=True,
    help="Days quarantined messages are kept (expired here every hour).",
)
@retention_option
@match_log_days_option
@click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=_DB_HELP)
def serve_command(
    host: str,
    port: int,
    tick: float,
    lease: float,
    quarantine_days: int,
    retention: timedelta,
    match_log_days: int,
    db: str | None,
) -> None:
    """Run the scheduler (polls what is due) and the REST API until interrupted.

    Several nodes may serve one PostgreSQL database (a cluster): each due source is polled by
    exactly one of them (leases taken with FOR UPDATE SKIP LOCKED)."""
    from feedgate.db import default_db, display_name
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.store import FeedStore

    name = db or default_db()
    sock = listen(host, port)
    store = open_store(name, FeedStore, create=True)
    token = _token()
    feed_log = ThreatFeedLog(store)
    click.echo(f"database:  {display_name(name)}")
    click.echo(f"log file:  {feed_log.path or '-'}")
    _run_manager(
        store,
        feed_log,
        sock,
        token,
        tick,
        timedelta(seconds=lease),
        quarantine_days,
        retention,
        match_log_days=match_log_days,
    )


@click.command("up")
@_port_option("The API's port (0: any free port; the hub always takes a free one).")
@click.option(
    "--pulses",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Demo pulses seeded into an empty hub.",
)
@click.option(
    "--gateway-port",
    type=click.IntRange(0, 65535),
    default=10025,
    show_default=True,
    help="The SMTP gateway's port on 127.0.0.1 (0: any free port, said on start); without"
    " --relay, the Maildir sink takes the next port (10026 by default), so released mail finds it"
    " after a restart.",
)
@click.option(
    "--relay",
    default=None,
    callback=_relay_address,
    metavar="HOST:PORT",
    help="Where mail that passes the gateway goes (an MTA) [default: a Maildir sink that "
    "files it under <data dir>/delivered/].",
)
@lease_option("How long this node's claim on a source lasts unless renewed")
@retention_option
@match_log_days_option
def up_command(
    port: int,
    gateway_port: int,
    relay: tuple[str, int] | None,
    pulses: int,
    lease: float,
    retention: timedelta,
    match_log_days: int,
) -> None:
    """The whole system on the embedded default: hub, source, one poll, SMTP gateway,
    scheduler and API."""
    from feedgate.asgi_server import serving
    from feedgate.db import default_db, default_hub_db, display_name
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.scheduler import LeaseHeld
    from feedgate.feeds.sources import make_source
    from feedgate.feeds.store import FeedStore
    from feedgate.hub.app import create_app
    from feedgate.hub.passwords import new_api_key
    from feedgate.hub.seed import seed
    from feedgate.hub.store import HubStore

    from .sources import poll_and_echo

    hub_db, feeds_db = default_hub_db(), default_db()
    # First: a busy port is said before anything is done.
    sock = listen("127.0.0.1", port)
    gateway_sock = listen("127.0.0.1", gateway_port, option="--gateway-port")
    sink_sock = None if relay else _sink_socket(gateway_port)
    hub = open_store(hub_db, HubStore, create=True)
    token = _token()  # before the seeding and the poll: a short one is said at once
    author = hub.default_author() or "AlienVault"
    if hub.max_seq() == 0:
        click.echo(f"seeding the hub with {pulses} demo pulses by {author} ...", err=True)
        seed(hub, pulses=pulses, indicators_per_pulse=20, author=author)
    store = open_store(feeds_db, FeedStore, create=True)
    feed_log = ThreatFeedLog(store)
    known = store.get_source("otx-demo")  # its key, if still the gateway's: one key, not one a run
    key = known.username if known and known.username else ""
    if (owner := hub.user_by_api_key(key)) is None or owner.username != "gateway":
        key = new_api_key()
    hub.create_user("gateway", api_key=key, subscribe=[author] if hub.get_user(author) else [])
    with serving(create_app(hub)) as hub_url:
        host, hub_port = hub_url.removeprefix("http://").rsplit(":", 1)
        # The same path as `feedgate source add`: the key (the user name) is a secret there
        source = make_source(
            {
                "name": "otx-demo",
                "description": f"the demo hub's feed of {author}",
                "hostname": host,
                "port": int(hub_port),
                "use_https": False,
                "poll_path": "/taxii/poll",
                "collection": f"user_{author}",
                "username": key,
                "password": "x",
                "age": "200d",
                "poll_segment": "30d",
            }
        )
        if store.get_source(source.name) is None:
            store.add_source(source)
        else:
            store.update_source(source)  # the hub's port is new on every start
        click.echo(f"hub:       {hub_url}/taxii/discovery (OTX REST: {hub_url}/api/v1/)")
        click.echo(f"API key:   {key}  (the demo user 'gateway', following {author})")
        click.echo(f"databases: hub {display_name(hub_db)}, manager {display_name(feeds_db)}")
        click.echo(f"log file:  {feed_log.path or '-'}")
        try:
            poll_and_echo(store, source, feed_log, timedelta(seconds=lease))
        except LeaseHeld as exc:  # e.g. a `feedgate up` killed mid-poll, its lease not expired
            click.echo(f"first poll skipped: {exc}", err=True)
        with _gateway(store, feeds_db, gateway_sock, relay, sink_sock):
            _run_manager(
                store,
                feed_log,
                sock,
                token,
                10.0,
                timedelta(seconds=lease),
                retention=retention,
                match_log_days=match_log_days,
                first_admin=True,
            )


def register(group: click.Group) -> None:
    """Add ``serve`` and ``up`` to the ``feedgate`` command."""
    group.add_command(serve_command)
    group.add_command(up_command)
