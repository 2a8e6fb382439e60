"""``feedgate milter``: the mail policy inside Postfix or Sendmail, over the milter protocol.

Thin over :class:`feedgate.mail.milter.MilterFilter` and :func:`feedgate.mail.milter.serve`.
Prints where it listens and the database, then one line per message that matched anything (and
every refusal or failure) on stderr, until SIGINT or SIGTERM. In Postfix's ``main.cf``::

    smtpd_milters = inet:127.0.0.1:11332
    milter_default_action = tempfail
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from .errors import database_failure, fail, fail_because, open_store

_DB_HELP = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."


def _check_listen(_ctx: click.Context, _param: click.Parameter, value: str) -> object:
    from feedgate.mail.milter import parse_listen

    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("milter")
@click.option(
    "--listen",
    "address",
    default="inet:127.0.0.1:11332",
    show_default=True,
    callback=_check_listen,
    metavar="inet:HOST:PORT|unix:/PATH",
    help="Where the MTA connects (Postfix's smtpd_milters names the same).",
)
@click.option(
    "--scan-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds a scan may take; a message whose scan overruns is tempfailed.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Scanning processes, the scans run at once [default: the CPU count].",
)
@click.option(
    "--relay",
    metavar="HOST:PORT",
    default=None,
    help="Where a released quarantined message goes (recorded with it; else given at release):"
    " an MTA port without this milter (README: Postfix's release port), since one that runs it"
    " would quarantine the message again.",
)
@click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=_DB_HELP)
def milter_command(
    address: object, scan_timeout: float, workers: int | None, relay: str | None, db: str | None
) -> None:
    """Enforce the mail policy in Postfix or Sendmail before queue: reject (550 5.7.1),
    discard, quarantine, tag the Subject or add a header; a message the milter cannot decide
    on is tempfailed (451), never passed unscanned.

    A quarantined message goes into feedgate's quarantine (`feedgate quarantine`, in the same
    database), then Postfix discards its copy; a release sends it through --relay (or the
    relay given to `feedgate quarantine release`). Passed mail goes into the mail index for
    the retro-scan."""
    import anyio
    import sqlalchemy.exc

    from feedgate.db import default_db, display_name
    from feedgate.feeds.store import FeedStore
    from feedgate.mail.milter import ListenAddress, MilterFilter, open_listener, serve
    from feedgate.mail.model import Envelope
    from feedgate.mail.policy import Verdict
    from feedgate.mail.quarantine import QuarantineStore
    from feedgate.mail.scan_pool import ScanPool

    assert isinstance(address, ListenAddress)
    if relay is not None:
        from feedgate.mail.relay import RelayAddressError, parse_address

        try:
            parse_address(relay)
        except RelayAddressError as exc:
            raise click.BadParameter(str(exc), param_hint="--relay") from None
    name = db or default_db()
    store = open_store(name, FeedStore)
    try:
        quarantine_store = QuarantineStore(store.engine)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    pool = ScanPool(str(name), workers or os.cpu_count() or 1, scan_timeout)

    def quarantine(raw: bytes, envelope: Envelope, verdict: Verdict) -> str:
        return str(quarantine_store.add(raw, envelope, verdict, relay=relay))

    milter = MilterFilter(pool, quarantine=quarantine)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("feedgate milter: %(message)s"))
    logger = logging.getLogger("feedgate.milter")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logging.getLogger("kilter").setLevel(logging.WARNING)

    async def ready(bound: ListenAddress) -> None:
        click.echo(f"milter:    {bound}")
        click.echo(f"workers:   {pool.workers} scanning processes")
        click.echo(f"database:  {display_name(name)}")
        sys.stdout.flush()

    async def run() -> None:
        try:
            listener = await open_listener(address)
        except OSError as exc:
            failed.append(exc)
            return
        try:  # the workers load the observables now, not on the first message
            await pool.start()
        except Exception as exc:  # they could not open the database
            cannot_start.append(exc)
            await listener.aclose()
            return
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tasks.cancel_scope.cancel()
                        return

            tasks.start_soon(stop_on_signal)
            await serve(milter, address, ready=ready, listener=listener)
            tasks.cancel_scope.cancel()

    failed: list[OSError] = []
    cannot_start: list[Exception] = []
    try:
        anyio.run(run, backend="asyncio")
    finally:
        pool.close()
        store.close()
    if cannot_start:
        fail_because(f"the scanning workers cannot start on {display_name(name)}", cannot_start[0])
    if failed:
        error = failed[0]
        fail(
            f"cannot listen on {address}: {error.strerror or error} "
            "(choose another with --listen, or stop what is using it)",
            error,
        )


def register(group: click.Group) -> None:
    group.add_command(milter_command)
