"""``feedgate exception list|add|delete``: values trusted whatever a feed says.

The kind is read from the value (:func:`feedgate.mail.exceptions.classify`): a domain (which
covers its subdomains), an e-mail address, an IP address or network, a URL or a hash. Each
exception carries a note saying why it is trusted. ``list --format jsonl`` prints the rows the
REST API returns (:meth:`~feedgate.mail.exceptions.ExceptionEntry.to_dict`).
"""

from __future__ import annotations

import json
from typing import Final

import click

from ._policy import db_option, format_option, group_db_option, policy_store, print_table

#: What an exception of each kind covers, said when one is added.
COVERS: Final = {
    "domain": "itself, its subdomains, URLs on them and addresses at them",
    "cidr": "every address and network inside it",
    "email": "this address",
    "url": "this URL exactly",
}


@click.group(name="exception")
@group_db_option
def exception_group() -> None:
    """The exception list: values that never match, whatever a feed lists (it always wins)."""


@exception_group.command("list")
@format_option("table", "jsonl", default="table")
@db_option
def list_command(format_: str, db: str | None) -> None:
    """The exceptions by kind and value, with their notes."""
    with policy_store(db) as store:
        entries = store.list_exceptions()
    if format_ == "jsonl":
        for entry in entries:
            click.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
        return
    if not entries:
        click.echo("no exceptions (add one with: feedgate exception add VALUE --note WHY)")
        return
    print_table(["KIND", "VALUE", "NOTE"], [[e.kind, e.value, e.note] for e in entries], whole={1})


@exception_group.command("add")
@click.argument("value")
@click.option(
    "--note",
    default="",
    metavar="TEXT",
    help="Why it is trusted (who asked, a ticket number); every exception needs one.",
)
@db_option
def add_command(value: str, note: str, db: str | None) -> None:
    """Trust VALUE: a domain (and its subdomains), e-mail address, IP address or network, URL
    or hash; its kind is read from it."""
    with policy_store(db, create=True) as store:
        entry = store.add_exception(value, note)
    covers = COVERS.get(entry.kind, "this value")
    click.echo(f"added exception {entry.kind} {entry.value}: covers {covers}")


@exception_group.command("delete")
@click.argument("value")
@db_option
def delete_command(value: str, db: str | None) -> None:
    """Stop trusting VALUE (spelt any way that means the same: EXAMPLE.com is example.com)."""
    from feedgate.mail.exceptions import ExceptionValueError, classify

    with policy_store(db) as store:
        store.delete_exception(value)
    try:
        kind, normal = classify(value)  # it was deleted: it classifies
        shown = f"{kind} {normal}"
    except ExceptionValueError:
        shown = value.strip()
    click.echo(f"deleted exception {shown}")


def register(group: click.Group) -> None:
    """Add ``exception`` to the ``feedgate`` command."""
    group.add_command(exception_group)
