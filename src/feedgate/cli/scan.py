"""``feedgate scan``: the verdict of the mail policy on messages in files.

Thin over :class:`feedgate.mail.scanner.Scanner` (the same decision the SMTP gateway makes).
One line per message: the path, the action, and each match as ``part kind value (source:
pulse title)``; ``--json`` writes one JSON object per message instead (the keys are
``Verdict.to_dict``'s). A folder is scanned recursively (``.eml`` files and files without an
extension); ``-`` reads one message from stdin.

Exit status 0 whatever the verdicts, 1 if a file could not be read (the others are still
scanned), 2 on bad usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import database_failure, fail, open_store

if TYPE_CHECKING:
    from feedgate.mail.policy import Verdict

_DB_HELP = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."


def _messages(paths: tuple[str, ...]) -> Iterator[Path | None]:
    """Each message file named or under a named folder, in order; None for stdin."""
    for name in paths:
        if name == "-":
            yield None
            continue
        path = Path(name)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.suffix.lower() in ("", ".eml"):
                    yield found
        else:
            yield path  # a missing file is reported when it is read


def _title(context: dict[str, object]) -> str:
    for key in ("package_title", "indicator_title", "package_id"):
        value = context.get(key)
        if value:
            return str(value)
    return "no title"


def line(verdict: Verdict) -> str:
    """The plain one-line report of a verdict."""
    found = [
        f"{m.part} {m.kind} {m.value} ({m.source}: {_title(dict(m.context))})"
        for m in verdict.matches
    ]
    notes = []
    for what, items in (
        ("suppressed", verdict.suppressed),
        ("excepted", verdict.excepted),
        ("skipped", verdict.skipped),
    ):
        if items:
            notes.append(f"{len(items)} {what}")
    text = f"{verdict.message}: {verdict.action}"
    if verdict.rules:
        text += f" [{', '.join(verdict.rules)}]"
    if found:
        text += ": " + "; ".join(found)
    if notes:
        text += f" ({', '.join(notes)})"
    return text


def _check_ip(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from feedgate.observables import InvalidValue, normalise_ip

    try:
        return normalise_ip(value)[1]
    except InvalidValue as exc:
        raise click.BadParameter(f"{value!r} is not an IP address ({exc})") from None


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="FILE.eml|DIR|-...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@click.option(
    "--client-ip",
    callback=_check_ip,
    help="The connecting IP (default: the topmost Received header's).",
)
@click.option("--envelope-from", metavar="ADDR", help="The SMTP MAIL FROM (default: Return-Path).")
@click.option("--no-log", is_flag=True, help="Write nothing to the match log.")
@click.option("--db", envvar="FEEDGATE_DB", help=_DB_HELP)
def scan(
    paths: tuple[str, ...],
    as_json: bool,
    client_ip: str | None,
    envelope_from: str | None,
    no_log: bool,
    db: str | None,
) -> None:
    """The mail policy's verdict on each message: which observables it carries, in which part,
    and what the rules do with it (reject, drop, quarantine, tag, header, log or deliver)."""
    import sqlalchemy.exc

    from feedgate.db import default_db
    from feedgate.feeds.store import FeedStore
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.scanner import Scanner

    name = db or default_db()
    store = open_store(name, FeedStore)
    failed = False
    try:
        scanner = Scanner(store, PolicyStore(store.engine, store.source_names), log=not no_log)
        for path in _messages(paths):
            try:
                raw = sys.stdin.buffer.read() if path is None else path.read_bytes()
            except OSError as exc:
                click.echo(f"feedgate: error: cannot read {path}: {exc.strerror}", err=True)
                failed = True
                continue
            verdict = scanner.scan(
                raw,
                message="-" if path is None else str(path),
                client_ip=client_ip,
                envelope_from=envelope_from,
            )
            if as_json:
                click.echo(json.dumps(verdict.to_dict(), ensure_ascii=False))
            else:
                click.echo(line(verdict))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    except MemoryError:
        fail("out of memory while scanning; scan fewer or smaller messages at once")
    if failed:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(scan)
