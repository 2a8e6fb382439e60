"""``feedgate quarantine list|show|release|delete``: the messages quarantine rules kept.

Thin over :class:`feedgate.mail.quarantine.QuarantineStore` (the REST API's
``/api/v1/quarantine`` calls the same methods). ``list --format jsonl`` prints one
:meth:`QuarantinedMessage.to_dict` per line; ``show --raw`` writes the message's bytes as they
were received. A release is recorded with the OS user who ran it; a release the relay refuses
leaves the message held with the relay's answer, says it, and the command exits 1 (the other
ids named are still tried); so does one that another node or admin is releasing right now.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from ._policy import DB_HELP, print_table
from ._relay_tls import make_release_tls, release_tls_options
from .errors import database_failure, fail, open_store

if TYPE_CHECKING:
    from feedgate.mail.quarantine import QuarantinedMessage, QuarantineStore


@contextmanager
def _store(db: str | None) -> Iterator[QuarantineStore]:
    import sqlalchemy.exc

    from feedgate.db import default_db
    from feedgate.mail.quarantine import QuarantineError, QuarantineStore

    name = db or default_db()
    store = open_store(name, QuarantineStore)
    try:
        yield store
    except QuarantineError as exc:
        fail(exc.message, exc)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    finally:
        store.engine.dispose()


def _since(text: str) -> datetime | None:
    from feedgate.feeds.sources import SourceError, parse_duration

    if text.strip().lower() == "all":
        return None
    try:
        return datetime.now(UTC) - parse_duration(text, "since")
    except SourceError as exc:
        raise click.BadParameter(f"{exc.message} (or all)", param_hint="--since") from None


def _status(m: QuarantinedMessage) -> str:
    if m.released_at is not None:
        return f"released by {m.released_by}"
    if m.claim_until is not None and m.claim_until > datetime.now(UTC):
        return f"held; being released by {m.claimed_by}"
    if m.release_error:
        return "held; release failed"
    return "held"


db_option = click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=DB_HELP)


@click.group("quarantine")
def quarantine() -> None:
    """The messages quarantine rules kept: list, show, release or delete them."""


@quarantine.command("list")
@click.option("--since", default="7d", show_default=True, help="How far back (e.g. 12h, 7d, all).")
@click.option("--source", default=None, help="Only messages a source's observables matched.")
@click.option("--all", "released", is_flag=True, help="Released messages too.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl"]),
    default="table",
    show_default=True,
)
@db_option
def list_command(since: str, source: str | None, released: bool, fmt: str, db: str | None) -> None:
    """The messages held, newest first."""
    start = _since(since)
    with _store(db) as store:
        found = store.list(since=start, source=source, released=released)
    if fmt == "jsonl":
        for m in found:
            click.echo(json.dumps(m.to_dict(), ensure_ascii=False))
        return
    if not found:
        click.echo("no quarantined messages" + (f" matching {source}" if source else ""))
        return
    rows = [
        [
            m.id,
            m.at.isoformat(timespec="seconds"),
            m.envelope.mail_from or "<>",
            f"{len(m.envelope.rcpt_tos)}",
            ",".join(sorted({str(x.get("source")) for x in m.matches})),
            _status(m),
            m.subject or "",
        ]
        for m in found
    ]
    print_table(["ID", "TIME", "FROM", "RCPTS", "SOURCES", "STATUS", "SUBJECT"], rows, whole={0})


@quarantine.command("show")
@click.argument("ident", metavar="ID")
@click.option("--raw", is_flag=True, help="The message's bytes, exactly as received.")
@db_option
def show(ident: str, raw: bool, db: str | None) -> None:
    """One quarantined message: envelope, rules, matches, release state (or its bytes)."""
    with _store(db) as store:
        if raw:
            data = store.raw(ident)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        m = store.get(ident)
    env = m.envelope
    click.echo(f"id:          {m.id}")
    click.echo(f"time:        {m.at.isoformat(timespec='seconds')}")
    click.echo(f"queue id:    {env.queue_id or '-'}")
    click.echo(f"client ip:   {env.client_ip or '-'}  (helo {env.helo or '-'})")
    click.echo(f"from:        {env.mail_from or '<>'}")
    click.echo(f"recipients:  {', '.join(env.rcpt_tos)}")
    click.echo(f"message-id:  {m.message_id or '-'}")
    click.echo(f"subject:     {m.subject or '-'}")
    click.echo(f"size:        {m.size} bytes")
    ca = f", CA file {m.relay_ca_file}" if m.relay_ca_file else ""
    click.echo(f"relay:       {m.relay or '-'}  (TLS {m.relay_tls}{ca})")
    click.echo(f"rules:       {', '.join(m.rules) or '-'}")
    for x in m.matches:
        click.echo(
            f"match:       {x.get('part')} {x.get('kind')} {x.get('value')} ({x.get('source')})"
        )
    if m.released_at is not None:
        when = m.released_at.isoformat(timespec="seconds")
        click.echo(f"released:    {when} by {m.released_by}")
    if m.release_error:
        when = m.release_error_at.isoformat(timespec="seconds") if m.release_error_at else "?"
        click.echo(f"last release refused ({when}): {m.release_error}")
    if m.claimed_by is not None and m.released_at is None:
        since = m.claimed_at.isoformat(timespec="seconds") if m.claimed_at else "?"
        until = m.claim_until.isoformat(timespec="seconds") if m.claim_until else "?"
        click.echo(f"release claimed: by {m.claimed_by} since {since} (claim lapses {until})")


@quarantine.command("release")
@click.argument("idents", nargs=-1, required=True, metavar="ID...")
@click.option("--relay", metavar="HOST:PORT", help="Send through this relay, not the recorded one.")
@release_tls_options
@db_option
def release(
    idents: tuple[str, ...],
    relay: str | None,
    relay_tls: str | None,
    relay_ca_file: str | None,
    db: str | None,
) -> None:
    """Send messages to their original recipients, byte for byte, through their relay.

    Each goes with the relay TLS recorded with it (the gateway's --relay-tls when it was
    quarantined; may for the milter's) unless --relay-tls is given, which wins."""
    from feedgate.mail.quarantine import QuarantineError

    tls = make_release_tls(relay_tls, relay_ca_file)
    by = getpass.getuser()
    failed = False
    with _store(db) as store:
        for ident in idents:
            try:
                m = store.release(ident, by=by, relay=relay, tls=tls)
            except QuarantineError as exc:
                click.echo(f"feedgate: error: {exc.message}", err=True)
                failed = True
                continue
            count = len(m.envelope.rcpt_tos)
            click.echo(f"released {m.id} to {count} recipient{'' if count == 1 else 's'}")
    if failed:
        sys.exit(1)


@quarantine.command("delete")
@click.argument("idents", nargs=-1, required=True, metavar="ID...")
@db_option
def delete(idents: tuple[str, ...], db: str | None) -> None:
    """Delete quarantined messages for good."""
    from feedgate.mail.quarantine import QuarantineError

    failed = False
    with _store(db) as store:
        for ident in idents:
            try:
                store.delete(ident)
            except QuarantineError as exc:
                click.echo(f"feedgate: error: {exc.message}", err=True)
                failed = True
                continue
            click.echo(f"deleted {ident}")
    if failed:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(quarantine)
