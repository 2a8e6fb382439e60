"""``feedgate admin add|list|delete|set-password``: who may log in to the web console.

Thin over :class:`~feedgate.feeds.console_users.ConsoleUsers` (argon2id hashes in the
manager's database). A password never goes on the command line, where ``ps`` and the shell's
history would show it: it comes from an environment variable (``--password-env VAR``) or a
hidden prompt (``--password-prompt``), and is never printed. A password that is empty or short
is refused naming the option that gave it (exit 2); a user that exists, or does not, is said in
one line (exit 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._policy import db_name, db_option, group_db_option, print_table
from .errors import fail, open_store

if TYPE_CHECKING:
    from feedgate.feeds.console_users import ConsoleUsers

F = TypeVar("F", bound=Callable[..., Any])


@click.group(name="admin")
@group_db_option
def admin_group() -> None:
    """Console users: who may log in to the web console (feedgate serve / up, at /)."""


def _password_options(func: F) -> F:
    func = click.option(
        "--password-prompt", is_flag=True, help="Ask for the password (hidden input, twice)."
    )(func)
    return click.option(
        "--password-env",
        default=None,
        metavar="VAR",
        help="Take the password from this environment variable (never from the command line).",
    )(func)


def _password(password_env: str | None, password_prompt: bool) -> str:
    """The password given by exactly one of the options, checked (length), or a usage error
    naming the option; never echoed."""
    from feedgate.feeds.console_users import ConsoleUserError, check_password

    if (password_env is None) == (not password_prompt):
        raise click.UsageError("give the password with --password-env VAR or --password-prompt")
    if password_env is not None:
        option = "--password-env"
        value = os.environ.get(password_env)
        if value is None:
            raise click.BadParameter(
                f"environment variable {password_env} is not set", param_hint=option
            )
    else:
        option = "--password-prompt"
        value = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    try:
        return check_password(value)
    except ConsoleUserError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@contextmanager
def _users(db: str | None, *, create: bool = False) -> Iterator[ConsoleUsers]:
    """The console users of the manager's database (made only if ``create``); a refusal of
    the library becomes one line and exit 1."""
    from feedgate.feeds.console_users import ConsoleUserError, ConsoleUsers

    users = open_store(db_name(db), ConsoleUsers, create=create)
    try:
        yield users
    except ConsoleUserError as exc:
        fail(str(exc), exc)
    finally:
        users.engine.dispose()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


@admin_group.command("add")
@click.argument("name")
@_password_options
@db_option
def add_command(name: str, password_env: str | None, password_prompt: bool, db: str | None) -> None:
    """Add console user NAME (letters, digits, . _ @ -) with a password of at least 12
    characters."""
    from feedgate.feeds.console_users import ConsoleUserError, check_name

    try:
        check_name(name)
    except ConsoleUserError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    password = _password(password_env, password_prompt)
    with _users(db, create=True) as users:
        users.add(name, password)
    click.echo(f"added console user {name}")


@admin_group.command("list")
@db_option
def list_command(db: str | None) -> None:
    """The console users: name, when added, when the password last changed, last login."""
    with _users(db) as users:
        rows = [
            [u.name, _when(u.created), _when(u.password_changed), _when(u.last_login)]
            for u in users.list()
        ]
    if not rows:
        click.echo("no console users (add one with: feedgate admin add NAME --password-env VAR)")
        return
    print_table(["NAME", "ADDED", "PASSWORD CHANGED", "LAST LOGIN"], rows)


@admin_group.command("delete")
@click.argument("name")
@db_option
def delete_command(name: str, db: str | None) -> None:
    """Delete console user NAME; their sessions end at once."""
    with _users(db) as users:
        if not users.delete(name):
            fail(f"no console user named {name!r} (see feedgate admin list)")
    click.echo(f"deleted console user {name}")


@admin_group.command("set-password")
@click.argument("name")
@_password_options
@db_option
def set_password_command(
    name: str, password_env: str | None, password_prompt: bool, db: str | None
) -> None:
    """Give console user NAME a new password; their sessions end (log in again)."""
    password = _password(password_env, password_prompt)
    with _users(db) as users:
        users.set_password(name, password)
    click.echo(f"changed the password of console user {name} (their sessions have ended)")


#: The console user ``feedgate up`` makes on its first start.
FIRST_ADMIN = "admin"


def console_login(users: ConsoleUsers, *, first_admin: bool) -> str:
    """What ``feedgate serve`` and ``up`` say after the console's URL. With ``first_admin``
    (``up``) and no console user yet, :data:`FIRST_ADMIN` is made with a random password, said
    this once (only its hash is kept, so a later start cannot say it again: it says that the
    user exists and how to set a new password)."""
    from feedgate.feeds.console_users import ConsoleUserError, new_password

    names = [user.name for user in users.list()]
    if not names and first_admin:
        password = new_password()
        try:
            users.add(FIRST_ADMIN, password)
        except ConsoleUserError:  # another start made it meanwhile
            names = [FIRST_ADMIN]
        else:
            return f"user {FIRST_ADMIN}, password {password}; shown once"
    if not names:
        return "no console user yet: feedgate admin add NAME --password-env VAR"
    if len(names) == 1:
        return (
            f"user {names[0]} exists, made earlier; a new password: feedgate admin "
            f"set-password {names[0]} --password-env VAR"
        )
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"users {shown} exist; a new password: feedgate admin set-password NAME --password-env VAR"
    )


def register(group: click.Group) -> None:
    """Add ``admin`` to the ``feedgate`` command."""
    group.add_command(admin_group)
