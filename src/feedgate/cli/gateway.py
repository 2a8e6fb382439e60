"""``feedgate gateway``: the SMTP filter in front of (or behind) a mail system.

Thin over :class:`feedgate.mail.gateway.Gateway`: the options become a
:class:`~feedgate.mail.gateway.GatewayConfig`, the listening socket is bound first (a busy port
is said before anything starts), then the scanning workers start (a database they cannot open is
said at once), then it serves until interrupted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._relay_tls import make_relay_tls, relay_tls_options
from .errors import fail_because, listen, open_store

if TYPE_CHECKING:
    import ssl

    from feedgate.mail.xforward import IPNetwork

_DB_HELP = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."


def _address(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    from feedgate.mail.relay import RelayAddressError, parse_address

    if value is None:
        return None
    try:
        return parse_address(value, any_port=param.name == "listen_on")
    except RelayAddressError as exc:
        raise click.BadParameter(str(exc)) from None


def _networks(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[IPNetwork, ...]:
    from feedgate.mail.xforward import parse_networks

    try:
        return parse_networks(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    import ssl

    if cert is None and key is None:
        return None
    if cert is None:
        raise click.UsageError("--tls-key needs --tls-cert (the certificate it belongs to)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        fail_because(
            f"cannot load the TLS certificate {cert}", exc, "give a PEM certificate and key"
        )
    return context


@click.command("gateway")
@click.option(
    "--listen",
    "listen_on",
    default="127.0.0.1:10025",
    show_default=True,
    callback=_address,
    metavar="HOST:PORT",
    help="Where mail is handed over (0.0.0.0:PORT for every interface).",
)
@click.option(
    "--relay",
    required=True,
    callback=_address,
    metavar="HOST:PORT",
    help="Where mail that passes goes (e.g. Postfix's reinjection port).",
)
@click.option(
    "--on-error",
    type=click.Choice(["tempfail", "accept"]),
    default="tempfail",
    show_default=True,
    help="A scan that fails or takes too long: 451 (the sender retries) or relay it unscanned.",
)
@click.option(
    "--xforward-from",
    default="127.0.0.0/8,::1",
    show_default=True,
    callback=_networks,
    metavar="CIDR[,CIDR...]",
    help="Clients that may tell the original sender with Postfix's XFORWARD (its content_filter"
    " hands mail over on loopback); the scan then uses that client's IP. 'none': nobody.",
)
@relay_tls_options
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate for STARTTLS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Its private key (PEM).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Scanning processes [default: the CPU count].",
)
@click.option("--max-connections", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--scan-timeout",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Seconds a scan may take.",
)
@click.option(
    "--quarantine-days",
    type=click.IntRange(1),
    default=14,
    show_default=True,
    help="Days quarantined messages are kept.",
)
@click.option("--mail-log", type=click.Path(dir_okay=False), help="[default: <data dir>/mail.log]")
@click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=_DB_HELP)
def gateway_command(
    listen_on: tuple[str, int],
    relay: tuple[str, int],
    on_error: str,
    xforward_from: tuple[IPNetwork, ...],
    relay_tls: str,
    relay_ca_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    workers: int | None,
    max_connections: int,
    scan_timeout: float,
    quarantine_days: int,
    mail_log: str | None,
    db: str | None,
) -> None:
    """Filter mail over SMTP: scan each message, then relay, tag, quarantine, drop or reject it.

    250 is answered only once the relay took the message (or the quarantine kept it); a relay
    that is down gives 451, so the sending MTA keeps the message and retries."""
    from datetime import timedelta

    from feedgate.db import default_db, display_name
    from feedgate.mail.gateway import Gateway, GatewayConfig
    from feedgate.mail.maillog import MailLog, default_path
    from feedgate.mail.quarantine import QuarantineStore

    context = _tls(tls_cert, tls_key)
    towards_relay = make_relay_tls(relay_tls, relay_ca_file)
    sock = listen(*listen_on, option="--listen")
    name = db or default_db()
    store = open_store(
        name,
        lambda e: QuarantineStore(e, retention=timedelta(days=quarantine_days)),
        create=True,
    )
    log_path = Path(mail_log) if mail_log else default_path()
    try:
        log = MailLog(log_path)
    except OSError as exc:
        fail_because(f"cannot open the mail log {log_path}", exc, "choose another with --mail-log")
    config = GatewayConfig(
        relay=relay,
        on_error="accept" if on_error == "accept" else "tempfail",
        workers=workers or os.cpu_count() or 1,
        max_connections=max_connections,
        scan_timeout=scan_timeout,
        tls_context=context,
        xforward_from=xforward_from,
        relay_tls=towards_relay,
    )
    gateway = Gateway(name, config, store, log)

    async def run() -> None:
        # SIGTERM (systemd's stop, kill) ends it as Ctrl-C does: the workers are let go and
        # waited for, never left running without their gateway.
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await gateway.start(sock)
        except Exception as exc:  # the workers could not open the database
            fail_because(f"the scanning workers cannot start on {display_name(name)}", exc)
        host, port = sock.getsockname()[:2]
        click.echo(f"gateway:   {host}:{port} -> relay {config.relay_text}")
        click.echo(
            f"workers:   {config.workers}  (STARTTLS {'on' if context else 'off'};"
            f" to the relay: TLS {towards_relay.level})"
        )
        trusted = ", ".join(str(n) for n in config.xforward_from) or "nobody"
        click.echo(f"xforward:  from {trusted}")
        click.echo(f"database:  {display_name(name)}")
        click.echo(f"mail log:  {log_path}")
        sys.stdout.flush()
        serving = asyncio.ensure_future(gateway.serve_forever())
        try:
            await stopping.wait()
        finally:
            serving.cancel()
            await gateway.stop()

    try:
        asyncio.run(run())
    finally:
        log.close()


def register(group: click.Group) -> None:
    group.add_command(gateway_command)
