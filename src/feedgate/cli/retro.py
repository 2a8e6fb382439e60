"""``feedgate retro``: the messages already delivered that a later poll's observables would have
caught (:mod:`feedgate.mail.retro`), from the retro-scan's findings.

``--run`` runs the retro-scan once first (``feedgate serve`` runs it every few seconds), so a
poll made with ``feedgate poll`` is matched against the mail index at once. ``--since`` is a
duration back from now (``7d``, ``12h``) or ``all``; ``--format jsonl`` prints the rows
``GET /api/v1/retro`` returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import click

from ._policy import db_name, db_option, format_option, print_table, refused

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds between two runs of the retro-scan in ``feedgate serve``: a poll's observables are
#: matched against the mail index within this (the issue asks for a minute).
RETRO_EVERY: Final = 5.0


def _retention(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    from feedgate.feeds.sources import SourceError, parse_duration

    try:
        return parse_duration(value, "mail_retention")
    except SourceError as exc:
        raise click.BadParameter(exc.message) from None


def retention_option(func: F) -> F:
    """``--mail-retention DUR`` (env ``FEEDGATE_MAIL_RETENTION``): how long the mail index
    keeps a passed message; one definition for every command that expires it."""
    return click.option(
        "--mail-retention",
        "retention",
        envvar="FEEDGATE_MAIL_RETENTION",
        default="14d",
        show_default=True,
        metavar="DUR",
        callback=_retention,
        help="How long the mail index keeps what passed messages could match"
        " [env: FEEDGATE_MAIL_RETENTION].",
    )(func)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command("retro")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    metavar="DUR",
    help="Findings of this long up to now (e.g. 12h, 7d, 2w), or all.",
)
@click.option("--source", default=None, metavar="NAME", help="Only this source's findings.")
@click.option(
    "--run", "run", is_flag=True, help="Run the retro-scan once first (match the new polls now)."
)
@retention_option
@format_option("table", "jsonl", default="table")
@db_option
def retro_command(
    since: str,
    source: str | None,
    run: bool,
    retention: timedelta,
    format_: str,
    db: str | None,
) -> None:
    """Delivered messages that observables added since would have caught."""
    import sqlalchemy.exc

    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.sources import SourceError
    from feedgate.feeds.store import FeedStore
    from feedgate.mail.mailindex import MailIndex
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.retro import RetroScanner, retro_finds
    from feedgate.web.api_policy import since_moment

    from .errors import database_failure, open_store

    try:
        start = since_moment(since, datetime.now(UTC))
    except SourceError as exc:
        refused(exc, "--since")
    name = db_name(db)
    store = open_store(name, FeedStore, create=run)
    try:
        if run:
            with ThreatFeedLog(store) as feed_log:
                scanner = RetroScanner(
                    store,
                    PolicyStore(store.engine, store.source_names),
                    MailIndex(store.engine, retention=retention),
                    feed_log=feed_log,
                )
                new = scanner.run_once()
            click.echo(
                f"retro-scan: {len(new)} new finding{'' if len(new) == 1 else 's'}", err=True
            )
        finds = retro_finds(store.engine, since=start, source=source)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    finally:
        store.close()
    if format_ == "jsonl":
        for find in finds:
            click.echo(json.dumps(find.to_dict(), ensure_ascii=False))
        return
    window = "ever" if start is None else f"since {_when(start)}"
    if not finds:
        click.echo(f"no retro findings {window}" + (f" for source {source}" if source else ""))
        return
    print_table(
        ["FOUND", "PASSED", "WOULD", "MODE", "SOURCE", "MESSAGE", "FROM", "PART", "KIND", "VALUE"],
        [
            [
                _when(f.at),
                f"{f.passed} {_when(f.scanned_at)}",
                f.action,
                f.mode,
                f.source,
                f.message_id or f.name or "-",
                f.envelope_from or "-",
                f.part,
                f.kind,
                f.value,
            ]
            for f in finds
        ],
    )


def register(group: click.Group) -> None:
    """Add ``retro`` to the ``feedgate`` command."""
    group.add_command(retro_command)
