"""``feedgate hub ...``: the hub's server and admin commands (serve, seed, user, key, pulse).

Registered on the ``feedgate`` group by :func:`register`. The database is ``--db`` or
``FEEDGATE_HUB_DB`` (default: ``hub.db`` under the user's data directory). SQLAlchemy is imported
only when a hub command runs, so the rest of ``feedgate`` starts as fast as before.

Exit status 0 on success, 1 on a failure (one ``feedgate: error: ...`` line on stderr, the stack
trace only with ``feedgate -v``), 2 on bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .errors import fail_because

if TYPE_CHECKING:
    from feedgate.hub.store import HubStore

_DB_HELP = "The hub's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_HUB_DB]."


def _db_name(db: str | None) -> str:
    from feedgate.db import default_hub_db

    group_db = click.get_current_context().meta.get("feedgate.hub.db")  # meta is shared

    return db or group_db or default_hub_db()


@contextmanager
def _store(db: str | None, *, create: bool = False) -> Iterator[tuple[HubStore, str]]:
    """Open the hub store; any database or hub error becomes one line and exit 1. Only a
    command that adds something (``create=True``) makes a missing database: one that reads,
    deletes or revokes says "no such database" (a mistyped ``--db`` is not a new hub)."""
    import sqlalchemy.exc

    from feedgate.db import DatabaseConfigError, display_name, engine
    from feedgate.hub.model import OTXFormatError
    from feedgate.hub.store import HubError, HubStore

    name = _db_name(db)
    shown = display_name(name)
    try:
        store = HubStore(engine(name, create=create))
    except (DatabaseConfigError, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        fail_because(f"database {shown}", exc)
    try:
        yield store, shown
    except (HubError, OTXFormatError, ValueError) as exc:
        fail_because(shown, exc)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        fail_because(f"database {shown}", exc)
    finally:
        store.close()


_db_option = click.option("--db", default=None, metavar="DB", help=_DB_HELP)


@click.group(name="hub")
@click.option("--db", envvar="FEEDGATE_HUB_DB", default=None, metavar="DB", help=_DB_HELP)
@click.pass_context
def hub(ctx: click.Context, db: str | None) -> None:
    """The OTX-compatible threat exchange: admin commands."""
    ctx.meta["feedgate.hub.db"] = db


@hub.command("seed")
@click.option(
    "--pulses",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="How many pulses to write.",
)
@click.option(
    "--indicators-per-pulse", type=click.IntRange(0), default=20, show_default=True,
    help="Indicators in each pulse (every OTX type appears).",
)  # fmt: skip
@click.option("--author", default="AlienVault", show_default=True, help="The pulses' author.")
@click.option("--seed", "seed_", type=int, default=0, show_default=True, help="Random seed.")
@_db_option
def seed_command(
    pulses: int, indicators_per_pulse: int, author: str, seed_: int, db: str | None
) -> None:
    """Fill the hub with deterministic demo pulses (documentation IPs, reserved TLDs)."""
    from feedgate.hub.seed import seed

    if not author.strip():
        raise click.BadParameter("must not be empty", param_hint="--author")
    with _store(db, create=True) as (store, shown):
        result = seed(
            store,
            pulses=pulses,
            indicators_per_pulse=indicators_per_pulse,
            author=author,
            seed=seed_,
        )
    click.echo(
        f"seeded {result.pulses} pulses with {result.indicators} indicators by {author} "
        f"into {shown} in {result.seconds:.1f} s"
    )


@hub.group("user")
def user_group() -> None:
    """Hub users: API keys, passwords, subscriptions."""


@user_group.command("add")
@click.argument("name")
@click.option("--api-key", default=None, help="Use this API key (default: generate one).")
@click.option(
    "--password-env",
    metavar="VAR",
    default=None,
    help="Set a password (Basic auth with the user name) from this environment variable.",
)
@click.option(
    "--subscribe", "authors", multiple=True, metavar="AUTHOR", help="Follow AUTHOR (repeatable)."
)
@_db_option
def user_add(
    name: str,
    api_key: str | None,
    password_env: str | None,
    authors: tuple[str, ...],
    db: str | None,
) -> None:
    """Create user NAME, or add a key, password or subscriptions to an existing one.

    A generated API key is printed once on stdout; only its digest is stored. Authors to
    follow must be users of the hub (every author of a pulse is one).
    """
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise click.BadParameter(
                f"environment variable {password_env} is not set or empty",
                param_hint="--password-env",
            )
    if api_key is not None and not api_key.strip():
        raise click.BadParameter("must not be empty", param_hint="--api-key")
    with _store(db, create=True) as (store, _shown):
        before = _account(store, name.strip())
        user, generated = store.create_user(
            name, api_key=api_key, password=password, subscribe=authors
        )
        keys, follows = _account(store, user.username) or ((), [])
    detail = f"; follows {', '.join(follows)}" if follows else ""
    if before is None:
        said = f"created user {user.username}{detail}"
    else:
        added = [f"added API key {k}" for k in keys if k not in before[0]]
        added += ["set the password"] if password is not None else []
        new = [a for a in follows if a not in before[1]]
        added += [f"following {', '.join(new)}"] if new else []
        said = (
            f"updated user {user.username}: {', '.join(added)}{detail}"
            if added
            else f"user {user.username} exists and already has all that: nothing changed"
            " (add to it with --api-key, --password-env or --subscribe)"
        )
    if generated:
        click.echo(f"{said}; API key (shown only once):", err=True)
        click.echo(generated)
    else:
        click.echo(said, err=True)


def _account(store: HubStore, name: str) -> tuple[tuple[str, ...], list[str]] | None:
    """A user's key ids and the authors they follow (None: no such user), to say what changed."""
    if store.get_user(name) is None:
        return None
    return tuple(k.id for k in store.api_keys(name)), store.subscriptions(name)


@user_group.command("list")
@_db_option
def user_list(db: str | None) -> None:
    """List users: whom they follow, how many API keys they have, whether a password is set."""
    with _store(db) as (store, _shown):
        keys = Counter(k.username for k in store.api_keys())
        for user in store.list_users():
            follows = ", ".join(store.subscriptions(user.username)) or "-"
            password = "\tpassword" if user.has_password else ""
            click.echo(
                f"{user.username}\tfollows: {follows}\tkeys: {keys[user.username]}{password}"
            )


@user_group.command("delete")
@click.argument("name")
@click.option(
    "--with-pulses", is_flag=True, help="Also delete the user's pulses (refused without it)."
)
@_db_option
def user_delete(name: str, with_pulses: bool, db: str | None) -> None:
    """Delete user NAME: their API keys, password and subscriptions, and others' subscriptions
    to them. A user who authored pulses is deleted only with --with-pulses."""
    with _store(db) as (store, _shown):
        pulses = store.delete_user(name, with_pulses=with_pulses)
    also = f" and their {pulses} pulse(s)" if pulses else ""
    click.echo(f"deleted user {name}{also}", err=True)


@hub.group("key")
def key_group() -> None:
    """API keys: list them (by id, never the key) and revoke them."""


@key_group.command("list")
@click.option("--user", "username", default=None, metavar="NAME", help="Only NAME's keys.")
@_db_option
def key_list(username: str | None, db: str | None) -> None:
    """List API keys as ID, user and when added. The id is a prefix of the key's stored digest:
    the key itself is never stored, so it cannot be shown again."""
    with _store(db) as (store, _shown):
        for key in store.api_keys(username):
            click.echo(f"{key.id}\t{key.username}\t{key.created.isoformat(timespec='seconds')}")


@key_group.command("revoke")
@click.argument("key_id", metavar="ID")
@_db_option
def key_revoke(key_id: str, db: str | None) -> None:
    """Revoke the API key with this ID (from `hub key list`): it no longer authenticates."""
    with _store(db) as (store, _shown):
        key = store.revoke_api_key(key_id)
    click.echo(f"revoked API key {key.id} of {key.username}", err=True)


@hub.group("pulse")
def pulse_group() -> None:
    """Pulses: import OTX pulse JSON."""


def _read_pulses(path: str) -> list[Any]:
    from feedgate.hub.model import OTXFormatError, pulse_from_otx

    try:
        if path == "-":
            data = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
    except OSError as exc:
        fail_because(path, OSError(exc.strerror or str(exc)))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail_because(path, ValueError(f"not JSON: {exc}"))
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]  # an OTX page: {count, next, previous, results}
    items = data if isinstance(data, list) else [data]
    out = []
    for n, item in enumerate(items):
        where = f"[{n}]" if isinstance(data, list) else ""
        if isinstance(item, dict) and "indicator" in item and "name" not in item:
            fail_because(
                path, ValueError(f"{where or 'item'}: an indicator, not a pulse (no 'name')")
            )
        try:
            out.append(pulse_from_otx(item, where=where))
        except OTXFormatError as exc:
            fail_because(path, exc)
    return out


@pulse_group.command("import")
@click.argument("file", metavar="FILE.json")
@_db_option
def pulse_import(file: str, db: str | None) -> None:
    """Import OTX pulse JSON (one pulse, a list, or an OTX results page; - for stdin).

    New pulses are added; a pulse whose id exists replaces it as a new revision. The file is
    checked completely before anything is stored. Imported pulses keep their created/modified
    times but get current TAXII timestamp labels, so feeds already polled past those times
    still receive them.
    """
    items = _read_pulses(file)
    with _store(db, create=True) as (store, shown):
        fresh = [p for p in items if store.get_pulse(p.id) is None]
        fresh_ids = {p.id for p in fresh}
        store.add_pulses(fresh, backdate=False)  # pollers' past windows must not hide them
        updated = 0
        for pulse in items:
            if pulse.id not in fresh_ids:
                store.update_pulse(pulse)
                updated += 1
    indicators = sum(len(p.indicators) for p in items)
    click.echo(
        f"imported {len(items)} pulses ({len(fresh)} new, {updated} updated, "
        f"{indicators} indicators) into {shown}"
    )


@hub.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=9000, show_default=True,
    help="Port to listen on (0: any free port, printed when ready).",
)  # fmt: skip
@click.option(
    "--page-size", type=click.IntRange(1), default=1000, show_default=True,
    help="Content blocks per TAXII poll part.",
)  # fmt: skip
@_db_option
def serve_command(host: str, port: int, page_size: int, db: str | None) -> None:
    """Serve TAXII 1.1 at /taxii/* and the OTX REST API at /api/v1/* until interrupted."""
    from feedgate.asgi_server import base_url, serve
    from feedgate.hub.app import create_app

    from .errors import listen

    with _store(db, create=True) as (store, shown):
        sock = listen(host, port)
        url = base_url(sock)

        def ready() -> None:
            click.echo(f"hub on {url} (TAXII 1.1: {url}/taxii/discovery, REST: {url}/api/v1/)")
            click.echo(f"database: {shown}; stop with Ctrl-C", err=True)
            sys.stdout.flush()

        serve(create_app(store, page_size=page_size), sock, ready=ready)


def register(group: click.Group) -> None:
    """Add ``hub`` to the ``feedgate`` command."""
    group.add_command(hub)
