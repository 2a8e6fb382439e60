"""``feedgate scan``: the verdict of the mail policy on messages in files.

Thin over :class:`feedgate.mail.scanner.Scanner` (the same decision the SMTP gateway makes).
One line per message: the path, the action, and each match as ``part kind value (source:
pulse title)``; then, for a source in monitor mode, a line per match it would have acted on,
``path: would have quarantine [rule]: part kind value (source: pulse title, monitor mode)``
(its action is not taken: the first line's is). ``--json`` writes one JSON object per message
instead (the keys are ``Verdict.to_dict``'s). A folder is scanned recursively (``.eml`` files
and files without an extension); ``-`` reads one message from stdin.

Exit status 0 whatever the verdicts, 1 if a file could not be read (the others are still
scanned), 2 on bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from .errors import database_failure, fail, open_store

if TYPE_CHECKING:
    from feedgate.mail.policy import Verdict

_DB_HELP = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."


class _Unreadable(NamedTuple):
    """A folder that could not be listed: reported like a file that could not be read."""

    path: str
    reason: str


def _messages(paths: tuple[str, ...]) -> Iterator[Path | _Unreadable | None]:
    """Each message file named or under a named folder, in order; None for stdin; a folder
    that cannot be listed as :class:`_Unreadable` (``Path.rglob`` would skip it silently)."""
    for name in paths:
        if name == "-":
            yield None
            continue
        path = Path(name)
        if not path.is_dir():
            yield path  # a missing file is reported when it is read
            continue
        unreadable: list[_Unreadable] = []

        def note(exc: OSError, into: list[_Unreadable] = unreadable) -> None:
            into.append(_Unreadable(str(exc.filename), exc.strerror or str(exc)))

        for folder, folders, files in os.walk(path, onerror=note):
            yield from unreadable
            unreadable.clear()
            folders.sort()
            for file in sorted(files):
                found = Path(folder, file)
                if found.suffix.lower() in ("", ".eml") and found.is_file():
                    yield found
        yield from unreadable


def _read(path: Path | None) -> bytes:
    """The message's bytes, at most ``MAX_MESSAGE_BYTES`` (``ValueError`` beyond: a file such
    as ``/dev/zero`` must not fill the memory before any limit applies)."""
    from feedgate.mail.limits import MAX_MESSAGE_BYTES

    if path is None:
        raw = sys.stdin.buffer.read(MAX_MESSAGE_BYTES + 1)
    else:
        with path.open("rb") as file:
            raw = file.read(MAX_MESSAGE_BYTES + 1)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError(
            f"over {MAX_MESSAGE_BYTES // 2**20} MiB, the largest message feedgate scans"
            " (feedgate.mail.limits.MAX_MESSAGE_BYTES); not scanned"
        )
    return raw


def _title(context: dict[str, object]) -> str:
    for key in ("package_title", "indicator_title", "package_id"):
        value = context.get(key)
        if value:
            return str(value)
    return "no title"


def line(verdict: Verdict) -> str:
    """The plain one-line report of a verdict: each distinct match once (with a count when
    the message carries it in several places), then what a tag or header rule adds."""
    from feedgate.mail.policy import HEADER_NAME

    found: dict[str, int] = {}
    for m in verdict.matches:
        entry = f"{m.part} {m.kind} {m.value} ({m.source}: {_title(dict(m.context))})"
        found[entry] = found.get(entry, 0) + 1
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
        text += ": " + "; ".join(f"{e} x{n}" if n > 1 else e for e, n in found.items())
    if verdict.subject_prefix:
        text += f"; subject prefix {verdict.subject_prefix!r}"
    if verdict.header:
        text += f"; adds {HEADER_NAME}: {verdict.header}"
    if notes:
        text += f" ({', '.join(notes)})"
    return text


def would_have_lines(verdict: Verdict) -> list[str]:
    """A line per distinct monitored match (counted when the message carries it in several
    places): what its rules would have done, had its source not been in monitor mode."""
    found: dict[str, int] = {}
    for w in verdict.would_have():
        m = w.match
        rules = f" [{', '.join(w.rules)}]" if w.rules else " (no rule applies)"
        entry = (
            f"would have {w.action}{rules}: {m.part} {m.kind} {m.value}"
            f" ({m.source}: {_title(dict(m.context))}, monitor mode)"
        )
        found[entry] = found.get(entry, 0) + 1
    return [f"{verdict.message}: {e}" + (f" x{n}" if n > 1 else "") for e, n in found.items()]


def lines(verdict: Verdict) -> list[str]:
    """What ``feedgate scan`` prints for a verdict: :func:`line`, then
    :func:`would_have_lines`."""
    return [line(verdict), *would_have_lines(verdict)]


def _check_ip(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from feedgate.observables import InvalidValue, normalise_ip

    try:
        return normalise_ip(value)[1]
    except InvalidValue as exc:
        raise click.BadParameter(str(exc)) from None


def _check_sender(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An address, or ``<>``/empty: the null sender of bounces (which offers nothing)."""
    if value is None or value.strip() in ("", "<>"):
        return value
    from feedgate.observables import InvalidValue, normalise_email

    try:
        normalise_email(value.strip().removeprefix("<").removesuffix(">"))
    except InvalidValue as exc:
        raise click.BadParameter(
            f"{exc}; give an address such as bounce@example.org, or <>"
        ) from None
    return value


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, metavar="FILE.eml|DIR|-...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@click.option(
    "--client-ip",
    callback=_check_ip,
    help="The connecting IP (default: the topmost Received header's).",
)
@click.option(
    "--envelope-from",
    metavar="ADDR",
    callback=_check_sender,
    help="The SMTP MAIL FROM, <> for none (default: Return-Path).",
)
@click.option("--no-log", is_flag=True, help="Write nothing to the match log.")
@click.option(
    "--index",
    "index",
    is_flag=True,
    help="Keep what the messages that pass could match in the mail index, as the gateway"
    " does, for the retro-scan (feedgate retro).",
)
@click.option("--db", envvar="FEEDGATE_DB", help=_DB_HELP)
def scan(
    paths: tuple[str, ...],
    as_json: bool,
    client_ip: str | None,
    envelope_from: str | None,
    no_log: bool,
    index: bool,
    db: str | None,
) -> None:
    """The mail policy's verdict on each message: which observables it carries, in which part,
    and what the rules do with it (reject, drop, quarantine, tag, header, log or deliver)."""
    import sqlalchemy.exc

    from feedgate.db import default_db
    from feedgate.feeds.store import FeedStore
    from feedgate.mail.mailindex import MailIndex
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.scanner import Scanner

    if paths.count("-") > 1:
        raise click.UsageError("stdin (-) can be named once: it holds one message")
    name = db or default_db()
    store = open_store(name, FeedStore)
    failed = False
    try:
        scanner = Scanner(
            store,
            PolicyStore(store.engine, store.source_names),
            log=not no_log,
            mail_index=MailIndex(store.engine) if index else None,
        )
        for path in _messages(paths):
            if isinstance(path, _Unreadable):
                click.echo(f"feedgate: error: cannot read {path.path}: {path.reason}", err=True)
                failed = True
                continue
            try:
                raw = _read(path)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                click.echo(f"feedgate: error: cannot read {path or '-'}: {reason}", err=True)
                failed = True
                continue
            except ValueError as exc:
                click.echo(f"feedgate: error: {path or '-'}: {exc}", err=True)
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
                click.echo("\n".join(lines(verdict)))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    except MemoryError:
        fail("out of memory while scanning a message; lower the memory it may take (ulimit -v)?")
    if failed:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(scan)
