"""``feedgate source add|list|show|edit|delete|enable|disable``: the feed sources.

Registered on the ``feedgate`` group by :func:`register`. The database is ``--db`` or
``FEEDGATE_DB`` (default: ``feedgate.db`` under the user's data directory). Passwords never go
on the command line: they come from an environment variable (``--password-env VAR``) or a hidden
prompt (``--password-prompt``), and are shown as ``********``. A user name that is a secret (OTX's
API key; see :func:`~feedgate.feeds.sources.secret_by_default`) comes best from
``--username-env VAR`` too, and is shown as ``(secret, set)``. ``add`` and ``edit`` build the
source with :func:`~feedgate.feeds.sources.make_source`, as the REST API does.

Exit status 0 on success, 1 on a failure (one ``feedgate: error: ...`` line on stderr, naming the
field and its option; the stack trace only with ``feedgate -v``), 2 on bad usage.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from feedgate.feeds.sources import (
    ALL_ENFORCE,
    MASK,
    MODES,
    OPTION_OF,
    SECRET_FIELDS,
    SECRET_SET,
    Source,
    SourceError,
    endpoint,
    format_duration,
    make_source,
    shown_username,
)

from .errors import database_failure, open_store
from .errors import fail as _fail
from .errors import first_line as _first_line

if TYPE_CHECKING:
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.poller import PollResult
    from feedgate.feeds.store import FeedStore

    from .progress import PollDisplay

F = TypeVar("F", bound=Callable[..., Any])

_DB_HELP = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."


def _source_error(exc: SourceError) -> NoReturn:
    option = OPTION_OF.get(exc.field)
    where = f"{exc.field} ({option})" if option else exc.field
    _fail(f"{where}: {exc.message}", exc)


def _db_name(db: str | None) -> str:
    from feedgate.db import default_db

    return db or click.get_current_context().meta.get("feedgate.source.db") or default_db()


@contextmanager
def _store(db: str | None, *, create: bool = False) -> Iterator[FeedStore]:
    """Open the feed store (a missing database made only if ``create``: only ``add`` does);
    any database or store error becomes one line and exit 1."""
    import sqlalchemy.exc

    from feedgate.feeds.secrets import SecretError
    from feedgate.feeds.store import FeedStore, FeedStoreError

    name = _db_name(db)
    store = open_store(name, FeedStore, create=create)
    try:
        yield store
    except SourceError as exc:
        _source_error(exc)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    except (FeedStoreError, SecretError) as exc:
        _fail(_first_line(exc), exc)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _get(store: FeedStore, name: str) -> Source:
    source = store.get_source(name)
    if source is None:
        _fail(f"no source named {name!r} (see feedgate source list)")
    return source


# -- options --------------------------------------------------------------------------------------


def _db_option(func: F) -> F:
    return click.option("--db", default=None, metavar="DB", help=_DB_HELP)(func)


def lease_option(help_: str) -> Callable[[F], F]:
    """``--lease SECONDS`` (env ``FEEDGATE_LEASE``) for ``poll`` and ``serve``: one definition,
    so a cluster's Poll Now and scheduler read the same variable with the same default and
    bounds. The default is :data:`~feedgate.feeds.scheduler.DEFAULT_LEASE`, written out because
    the scheduler is imported only when a command runs (tests check they agree)."""
    return click.option(
        "--lease",
        type=click.FloatRange(0.5),
        envvar="FEEDGATE_LEASE",
        default=120.0,
        show_default=True,
        metavar="SECONDS",
        help=f"{help_} [env: FEEDGATE_LEASE].",
    )


def _common_options(func: F) -> F:
    """Options ``add`` and ``edit`` share; in ``edit`` an option not given leaves a field alone."""
    options = [
        click.option("--description", default=None, help="Free text about the source."),
        click.option("--port", type=int, default=None, help="TCP port [add: 443]."),
        click.option("--https/--no-https", "use_https", default=None, help="HTTPS [add: yes]."),
        click.option(
            "--discovery-path", default=None, metavar="PATH", help="Discovery service path."
        ),
        click.option(
            "--taxii-version",
            type=click.Choice(["1.0", "1.1"]),
            default=None,
            help="TAXII version [add: 1.1].",
        ),
        click.option(
            "--username",
            default=None,
            help="Basic auth user; for an API key (OTX) prefer --username-env.",
        ),
        click.option(
            "--username-env",
            default=None,
            metavar="VAR",
            help="Take the user name (OTX: the API key) from this environment variable.",
        ),
        click.option(
            "--username-secret/--no-username-secret",
            "username_secret",
            default=None,
            help="Store the user name encrypted and never show it [add: yes for OTX, or when"
            " the password is empty or a placeholder such as x].",
        ),
        click.option(
            "--password-env",
            default=None,
            metavar="VAR",
            help="Take the password from this environment variable.",
        ),
        click.option(
            "--password-prompt", is_flag=True, help="Ask for the password (hidden input)."
        ),
        click.option("--cert", "cert_file", default=None, metavar="FILE", help="Client cert."),
        click.option("--key", "key_file", default=None, metavar="FILE", help="Client key."),
        click.option(
            "--key-password-env",
            default=None,
            metavar="VAR",
            help="Take the client key's password from this environment variable.",
        ),
        click.option("--ca-cert", default=None, metavar="FILE", help="CA bundle to trust."),
        click.option(
            "--verify/--no-verify",
            "verify_ssl",
            default=None,
            help="Verify the server's certificate [add: yes].",
        ),
        click.option(
            "--proxy-url", default=None, metavar="URL", help="http(s)://host:port or noproxy."
        ),
        click.option("--interval", default=None, metavar="DUR", help="Poll every [add: 60m]."),
        click.option("--age", default=None, metavar="DUR", help="Look back / keep [add: 30d]."),
        click.option(
            "--segment", default=None, metavar="DUR", help="One request's span [add: 1d]."
        ),
        click.option("--retries", type=int, default=None, help="Retries per segment [add: 3]."),
        click.option(
            "--timeout",
            default=None,
            metavar="DUR",
            help="Per request: to connect and for each read of the answer [add: 60s].",
        ),
        click.option(
            "--enforce",
            multiple=True,
            metavar="KIND",
            help="Enforce KIND (repeat, or comma-separate; 'all'). In add: only these.",
        ),
        click.option(
            "--no-enforce", multiple=True, metavar="KIND", help="Do not enforce KIND (or 'all')."
        ),
        click.option(
            "--fp-gate/--no-fp-gate",
            "fp_gate",
            default=None,
            help="False-positive gate: never enforce this source's observables that would block"
            " the world (google.com, 10.0.0.0/8, the empty file's hash) [add: yes].",
        ),
        click.option(
            "--mode",
            type=click.Choice(MODES, case_sensitive=False),
            default=None,
            help="enforce: the rules act on this source's matches; monitor: they are only"
            " logged as what would have been done, nothing is done [add: enforce].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _env_secret(var: str, option: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise click.BadParameter(
            f"environment variable {var} is not set or empty", param_hint=option
        )
    return value


def _kinds(values: tuple[str, ...], option: str) -> frozenset[str]:
    kinds = {part.strip().lower() for value in values for part in value.split(",") if part.strip()}
    if "all" in kinds:
        kinds = (kinds - {"all"}) | ALL_ENFORCE
    unknown = kinds - ALL_ENFORCE
    if unknown:
        raise click.BadParameter(
            f"unknown kind(s) {', '.join(sorted(unknown))}: choose from "
            f"{', '.join(sorted(ALL_ENFORCE))} or all",
            param_hint=option,
        )
    return frozenset(kinds)


def _optional(text: str) -> str | None:
    """An empty value clears an optional field."""
    return text if text.strip() else None


def _changes(opts: dict[str, Any], current: Source | None) -> dict[str, Any]:
    """The fields the options set, for :func:`~feedgate.feeds.sources.make_source` (durations
    as text); ``current`` is the source being edited (None in add)."""
    if opts["password_env"] is not None and opts["password_prompt"]:
        raise click.UsageError("give --password-env or --password-prompt, not both")
    if opts["username"] is not None and opts["username_env"] is not None:
        raise click.UsageError("give --username or --username-env, not both")
    changes: dict[str, Any] = {}
    for key in (
        "description",
        "port",
        "use_https",
        "taxii_version",
        "verify_ssl",
        "fp_gate",
        "mode",
    ):
        if opts[key] is not None:
            changes[key] = opts[key]
    if opts["username_secret"] is not None:
        changes["username_secret"] = opts["username_secret"]
    for key in ("discovery_path", "username", "cert_file", "key_file", "ca_cert", "proxy_url"):
        if opts[key] is not None:
            changes[key] = _optional(opts[key])
    if opts["username_env"] is not None:
        changes["username"] = _env_secret(opts["username_env"], "--username-env")
    if opts.get("no_password"):
        changes["password"] = None
    if opts["password_env"] is not None:
        changes["password"] = _env_secret(opts["password_env"], "--password-env")
    elif opts["password_prompt"]:
        changes["password"] = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, err=True
        )
    if opts["key_password_env"] is not None:
        changes["key_password"] = (
            _env_secret(opts["key_password_env"], "--key-password-env")
            if opts["key_password_env"]
            else None
        )
    for key, field in (
        ("interval", "polling_interval"),
        ("age", "age"),
        ("segment", "poll_segment"),
        ("timeout", "timeout"),
    ):
        if opts[key] is not None:
            changes[field] = opts[key]
    if opts["retries"] is not None:
        changes["max_retries"] = opts["retries"]
    enforce = _kinds(opts["enforce"], "--enforce")
    no_enforce = _kinds(opts["no_enforce"], "--no-enforce")
    if enforce or no_enforce:
        if current is None:
            base = enforce if opts["enforce"] else ALL_ENFORCE
        else:
            base = current.enforce | enforce
        changes["enforce"] = base - no_enforce
    return changes


def _warn_if_key_on_command_line(opts: dict[str, Any], source: Source) -> None:
    """A secret user name given with ``--username`` is in the process list and the shell's
    history: it is stored all the same (it was the way before), and the admin is told."""
    if opts["username"] and source.username_secret:
        click.echo(
            f"feedgate: warning: the user name of source {source.name} is a secret (an API"
            " key): given with --username it can be seen in the process list and the shell"
            " history; give it with --username-env VAR instead",
            err=True,
        )


def _describe(source: Source) -> str:
    return (
        f"{endpoint(source)}, collection {source.collection}, "
        f"every {format_duration(source.polling_interval)}"
        + ("" if source.enabled else ", disabled")
        + (", monitor mode" if source.mode == "monitor" else "")
    )


# -- commands -------------------------------------------------------------------------------------


@click.group(name="source")
@click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=_DB_HELP)
@click.pass_context
def source_group(ctx: click.Context, db: str | None) -> None:
    """Feed sources: the TAXII servers and collections to poll."""
    ctx.meta["feedgate.source.db"] = db


@source_group.command("add")
@click.argument("name")
@click.option("--hostname", required=True, metavar="HOST", help="Server host name (no URL).")
@click.option("--poll-path", required=True, metavar="PATH", help="Poll service path.")
@click.option("--collection", required=True, help="The TAXII collection to poll.")
@_common_options
@click.option("--disabled", is_flag=True, help="Add it disabled (not polled until enabled).")
@_db_option
def add_command(
    name: str,
    hostname: str,
    poll_path: str,
    collection: str,
    disabled: bool,
    db: str | None,
    **opts: Any,
) -> None:
    """Add source NAME (letters, digits, - _ .)."""
    fields = _changes(opts, None)
    try:
        source = make_source(
            {
                "name": name,
                "hostname": hostname,
                "poll_path": poll_path,
                "collection": collection,
                "enabled": not disabled,
                **fields,
            }
        )
    except SourceError as exc:
        _source_error(exc)
    _warn_if_key_on_command_line(opts, source)
    from feedgate.feeds.store import FeedStoreError

    with _store(db, create=True) as store:
        if store.get_source(source.name) is not None:
            _fail(
                f"a source named {source.name} exists: choose another name, or change it with "
                f"feedgate source edit {source.name}"
            )
        try:
            store.add_source(source)
        except FeedStoreError as exc:  # added by someone else meanwhile
            _fail(_first_line(exc), exc)
    click.echo(f"added source {source.name}: {_describe(source)}")


@source_group.command("edit")
@click.argument("name")
@click.option("--hostname", default=None, metavar="HOST", help="Server host name (no URL).")
@click.option("--poll-path", default=None, metavar="PATH", help="Poll service path.")
@click.option("--collection", default=None, help="The TAXII collection to poll.")
@_common_options
@click.option("--no-password", is_flag=True, help="Remove the stored password.")
@_db_option
def edit_command(
    name: str,
    hostname: str | None,
    poll_path: str | None,
    collection: str | None,
    db: str | None,
    **opts: Any,
) -> None:
    """Change source NAME: only the options given; an empty value ('') clears an optional one."""
    if opts["no_password"] and (opts["password_env"] is not None or opts["password_prompt"]):
        raise click.UsageError("give a new password or --no-password, not both")
    with _store(db) as store:
        current = _get(store, name)
        fields = _changes(opts, current)
        for key, value in (
            ("hostname", hostname),
            ("poll_path", poll_path),
            ("collection", collection),
        ):
            if value is not None:
                fields[key] = value
        source = make_source(fields, current)
        _warn_if_key_on_command_line(opts, source)
        # unreadable_secrets is not compared: a secret removed (--no-password) is a change
        if source == current and source.unreadable_secrets == current.unreadable_secrets:
            click.echo(f"source {name}: nothing changed")
            return
        store.update_source(source)
    click.echo(f"updated source {source.name}: {'; '.join(_changed(current, source))}")


def _changed(old: Source, new: Source) -> list[str]:
    """What an edit changed, one item a field, in ``source show``'s words: ``fp_gate yes ->
    no``, ``enforce -ipv4 +url``; a secret (a password, a secret user name) only as ``(secret,
    changed)`` or ``(secret, removed)``, never its value."""
    said: list[str] = []
    for item in dataclasses.fields(new):
        name = item.name
        if name == "unreadable_secrets":
            continue
        before, after = getattr(old, name), getattr(new, name)
        unreadable = (name in old.unreadable_secrets) != (name in new.unreadable_secrets)
        if before == after and not unreadable:
            continue
        # a user name that is or was a secret: its value is said by neither side
        was_secret = name == "username" and (old.username_secret or new.username_secret)
        secret = name in SECRET_FIELDS or was_secret
        if secret:
            said.append(f"{name} (secret, {'removed' if after is None else 'changed'})")
        elif isinstance(after, frozenset):
            moves = [f"-{k}" for k in sorted(before - after)] + [
                f"+{k}" for k in sorted(after - before)
            ]
            said.append(f"{name} {' '.join(moves)}")
        else:
            said.append(f"{name} {_shown(name, before, old)} -> {_shown(name, after, new)}")
    return said


def _set_enabled(name: str, db: str | None, enabled: bool) -> None:
    with _store(db) as store:
        current = _get(store, name)
        if current.enabled != enabled:
            store.update_source(dataclasses.replace(current, enabled=enabled))
    click.echo(f"source {name} {'enabled' if enabled else 'disabled'}")


@source_group.command("enable")
@click.argument("name")
@_db_option
def enable_command(name: str, db: str | None) -> None:
    """Poll source NAME again on its interval."""
    _set_enabled(name, db, True)


@source_group.command("disable")
@click.argument("name")
@_db_option
def disable_command(name: str, db: str | None) -> None:
    """Stop polling source NAME (its observables stay until they age out)."""
    _set_enabled(name, db, False)


@source_group.command("delete")
@click.argument("name")
@_db_option
def delete_command(name: str, db: str | None) -> None:
    """Delete source NAME and its observables (its threat-feed log rows stay).

    To stop polling it but keep its observables until they age out, disable it instead."""
    with _store(db) as store:
        # Not _get: reading the source decrypts its credentials, and a source whose
        # credentials no longer decrypt (the secret key changed) must still be deletable.
        if not store.delete_source(name):
            _fail(f"no source named {name!r} (see feedgate source list)")
    click.echo(f"deleted source {name}")


def _status_fields(status: object) -> dict[str, Any]:
    if status is None:
        return {}
    if dataclasses.is_dataclass(status) and not isinstance(status, type):
        return dataclasses.asdict(status)
    if hasattr(status, "_asdict"):
        return dict(status._asdict())
    if isinstance(status, dict):
        return dict(status)
    return {key: value for key, value in vars(status).items() if not key.startswith("_")}


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z").replace("+0000", "Z")
    return "-" if value is None else str(value)


def _last_poll(status: dict[str, Any]) -> str:
    result = status.get("result")
    if not result:
        return "never"
    when = status.get("last_end") or status.get("last_start")
    text = str(result) + (f" {_when(when)}" if when else "")
    if status.get("error"):
        error = " ".join(str(status["error"]).split())
        text += f": {error[:60]}{'…' if len(error) > 60 else ''}"
    return text


def _status(store: FeedStore, name: str) -> dict[str, Any]:
    return _status_fields(store.status(name))


@source_group.command("list")
@_db_option
def list_command(db: str | None) -> None:
    """The sources: name, enabled, mode, host, collection, interval, last poll."""
    with _store(db) as store:
        rows = [
            [
                source.name,
                "yes" if source.enabled else "no",
                source.mode,
                source.hostname
                + ("" if source.port == (443 if source.use_https else 80) else f":{source.port}"),
                source.collection,
                format_duration(source.polling_interval),
                _last_poll(_status(store, source.name)),
            ]
            for source in sorted(store.list_sources(), key=lambda s: s.name)
        ]
    if not rows:
        click.echo("no sources (add one with: feedgate source add NAME --hostname ...)")
        return
    header = ["NAME", "ENABLED", "MODE", "HOST", "COLLECTION", "INTERVAL", "LAST POLL"]
    rows = [[_cut(cell) for cell in row[:-1]] + row[-1:] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


#: The widest a column of ``source list`` gets (``source show`` has every value whole).
_MAX_CELL = 40


def _cut(cell: str) -> str:
    return cell if len(cell) <= _MAX_CELL else cell[: _MAX_CELL - 1] + "…"


_UNREADABLE = "cannot be decrypted with the current secret key"


def _shown(name: str, value: Any, source: Source) -> str:
    if name in SECRET_FIELDS:
        if name in source.unreadable_secrets:
            return f"{MASK} ({_UNREADABLE})"
        return MASK if value is not None else "-"
    if name == "username":
        shown = shown_username(source)
        if "username" in source.unreadable_secrets:
            return f"{SECRET_SET[:-1]}; {_UNREADABLE})"
        return shown or "-"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, frozenset):
        return ", ".join(sorted(value)) or "none"
    if value is None or value == "":
        return "-"
    return str(value)


@source_group.command("show")
@click.argument("name")
@_db_option
def show_command(name: str, db: str | None) -> None:
    """Every field of source NAME (secrets as ******** or (secret, set)) and its last poll."""
    with _store(db) as store:
        source = _get(store, name)
        status = _status(store, name)
    lines = [
        (item.name, _shown(item.name, getattr(source, item.name), source))
        for item in dataclasses.fields(source)
        if item.name != "unreadable_secrets"  # said beside the secret itself
    ]
    lines.insert(lines.index(("poll_path", source.poll_path)) + 1, ("endpoint", endpoint(source)))
    lines.append(("last_poll", _last_poll(status)))
    for key, value in status.items():
        if key in ("name", "source", "result", "error") or value is None:
            continue
        lines.append((key, _when(value)))
    if status.get("error"):
        lines.append(("last_error", " ".join(str(status["error"]).split())))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def poll_and_echo(
    store: FeedStore,
    source: Source,
    log: ThreatFeedLog,
    lease: timedelta | None = None,
    display: PollDisplay | None = None,
) -> PollResult:
    """Poll Now: poll ``source`` under its lease (the scheduler's, so no node polls it at the
    same time) and print each threat-feed log line the poll writes as it is written (and the
    progress, on a terminal: :class:`~.progress.PollDisplay`).
    :class:`~feedgate.feeds.scheduler.LeaseHeld` (nothing polled) when another node holds the
    lease; a ``KeyboardInterrupt`` (Ctrl-C) after the poll's "interrupted" line is printed and
    its lease released."""
    from functools import partial

    from feedgate.feeds.interrupts import deferred_interrupts
    from feedgate.feeds.log import format_entry
    from feedgate.feeds.poller import poll_source
    from feedgate.feeds.scheduler import DEFAULT_LEASE, Scheduler

    from .progress import PollDisplay

    shown = display or PollDisplay()
    last = store.last_log_id()

    def echo_new() -> None:
        nonlocal last
        for entry in store.log_entries(source.name, after_id=last):
            last = entry.id  # first: a Ctrl-C while it prints must not print it twice
            shown.line(format_entry(entry))

    poll = partial(poll_source, written=echo_new, progress=shown.progress)
    try:
        with deferred_interrupts():  # Ctrl-C in a wait for the server, never mid-write
            return Scheduler(store, log, lease=lease or DEFAULT_LEASE, poll=poll).poll_now(source)
    finally:
        echo_new()  # anything written after the last line shown (none, as a rule)
        if display is None:
            shown.close()


@click.command("poll")
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "all_", is_flag=True, help="Every enabled source.")
@lease_option(
    "How long this poll's claim on a source lasts unless renewed (renewed while it runs; "
    "if this process dies, a node takes the source over after this)"
)
@_db_option
def poll_command(names: tuple[str, ...], all_: bool, lease: float, db: str | None) -> None:
    """Poll Now: poll the sources, print their threat-feed log lines as they happen (and the
    progress on stderr, when it is a terminal); exit 1 if one failed.

    A source that another node (a scheduler, another Poll Now) is polling right now is not
    polled: one line says which node, and the exit status is 1. Ctrl-C stops the poll where it
    is, keeping the segments stored so far; the exit status is then 130."""
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.scheduler import LeaseHeld

    from .progress import PollDisplay

    if names and all_:
        raise click.UsageError("name the sources to poll or give --all, not both")
    if not names and not all_:
        raise click.UsageError("name the sources to poll, or give --all")
    failed = 0
    display = PollDisplay()
    with _store(db) as store:
        if all_:
            sources = [s for s in store.list_sources() if s.enabled]
            if not sources:
                click.echo(
                    "feedgate: no enabled source to poll (see feedgate source list)", err=True
                )
        else:
            sources = [_get(store, name) for name in names]
        log = ThreatFeedLog(store)
        try:
            for source in sources:
                try:
                    result = poll_and_echo(store, source, log, timedelta(seconds=lease), display)
                    failed += not result.ok
                except LeaseHeld as exc:
                    display.close()
                    click.echo(f"feedgate: error: {exc}", err=True)
                    failed += 1
        except KeyboardInterrupt:
            display.close()
            click.echo("feedgate: interrupted", err=True)
            sys.exit(130)
        finally:
            display.close()
    if failed:
        sys.exit(1)


def register(group: click.Group) -> None:
    """Add ``source`` and ``poll`` to the ``feedgate`` command."""
    group.add_command(source_group)
    group.add_command(poll_command)
