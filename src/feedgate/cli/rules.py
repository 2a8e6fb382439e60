"""``feedgate rule list|show|add|edit|delete|enable|disable``: the policy's ordered rules.

A rule says "if <part> matches <sources/kinds> then <action>"; without ``--part``, ``--source``
or ``--kind`` it applies to every one of them, and in ``edit`` the word ``any`` says so again
(``--source any``). Every field is checked by :mod:`feedgate.mail.rules` through
:class:`~feedgate.mail.policy_store.PolicyStore`, as the REST API's are; ``list --format jsonl``
prints the rows the API returns (:meth:`~feedgate.mail.rules.Rule.to_dict`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import click

from ._policy import (
    db_option,
    format_option,
    group_db_option,
    policy_store,
    print_table,
    refused,
    words,
)
from .errors import fail

if TYPE_CHECKING:
    from feedgate.mail.rules import Rule

#: What ``--source`` (and ``--part``, ``--kind``) takes to mean every one of them.
ANY: Final = ("any", "all")


def _any(values: list[str], what: str = "") -> str:
    return ", ".join(values) if values else ("any" + (f" {what}" if what else ""))


def describe(rule: Rule) -> str:
    """``#2 block-phish: if url, from matches otx (domain, url) then reject``, one line."""
    data = rule.to_dict()
    action = data["action"] + (f" {data['subject_prefix']}" if data["subject_prefix"] else "")
    return (
        f"#{rule.position} {rule.name}: if {_any(data['parts'], 'part')} matches "
        f"{_any(data['sources'], 'source')} ({_any(data['kinds'], 'kind')}) then {action}"
        + ("" if rule.enabled else " (disabled)")
    )


def _sources(values: tuple[str, ...]) -> list[str]:
    """``--source`` values; ``any`` (or ``all``) alone: every source."""
    given = words(values)
    return [] if [w.lower() for w in given] in ([a] for a in ANY) else given


_PART_HELP: Final = (
    "A part of the message: client-ip, envelope-from, from, sender, reply-to, url, attachment"
    " (repeat, or comma-separate; none: every part"
)
_SOURCE_HELP: Final = "A feed source's name (repeat, or comma-separate; none: every source"
_KIND_HELP: Final = (
    "An observable kind: ipv4, ipv6, cidr, domain, url, email, md5, sha1, sha256 (repeat, or"
    " comma-separate; none: every kind"
)
_ACTION_HELP: Final = "reject, drop, quarantine, tag, header or log"
#: What ``rule edit`` can change (``enabled`` has ``rule enable`` and ``rule disable``).
EDIT_OPTIONS: Final = "--name, --part, --source, --kind, --action, --position, --subject-prefix"
ENABLE_HINT: Final = "enabled: feedgate rule enable or disable"


@click.group(name="rule")
@group_db_option
def rule_group() -> None:
    """The mail policy's rules, applied in order: if a part matches sources/kinds, an action."""


@rule_group.command("list")
@format_option("table", "jsonl", default="table")
@db_option
def list_command(format_: str, db: str | None) -> None:
    """The rules in order: position, name, enabled, parts, sources, kinds, action."""
    with policy_store(db) as store:
        rules = store.list_rules()
    if format_ == "jsonl":
        for rule in rules:
            click.echo(json.dumps(rule.to_dict(), ensure_ascii=False))
        return
    if not rules:
        click.echo(
            "no rules: nothing is enforced (add one with: feedgate rule add NAME --action A)"
        )
        return
    rows = []
    for rule in rules:
        data = rule.to_dict()
        action = data["action"] + (f" {data['subject_prefix']}" if data["subject_prefix"] else "")
        rows.append(
            [
                str(rule.position),
                rule.name,
                "yes" if rule.enabled else "no",
                _any(data["parts"]),
                _any(data["sources"]),
                _any(data["kinds"]),
                action,
            ]
        )
    print_table(["POS", "NAME", "ENABLED", "PARTS", "SOURCES", "KINDS", "ACTION"], rows, whole={1})


@rule_group.command("show")
@click.argument("name")
@db_option
def show_command(name: str, db: str | None) -> None:
    """Every field of rule NAME."""
    with policy_store(db) as store:
        rule = store.get_rule(name)
    data = rule.to_dict()
    width = max(len(key) for key in data)
    for key, value in data.items():
        if isinstance(value, list):
            shown = _any(value)
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        else:
            shown = "-" if value is None else str(value)
        click.echo(f"{key + ':':<{width + 1}} {shown}")


@rule_group.command("add")
@click.argument("name")
@click.option("--part", "parts", multiple=True, metavar="PART", help=_PART_HELP + ").")
@click.option("--source", "sources", multiple=True, metavar="SOURCE", help=_SOURCE_HELP + ").")
@click.option("--kind", "kinds", multiple=True, metavar="KIND", help=_KIND_HELP + ").")
@click.option("--action", required=True, metavar="ACTION", help=f"What is done: {_ACTION_HELP}.")
@click.option(
    "--position", type=int, default=None, metavar="N", help="Put it at N (1: first) [last]."
)
@click.option(
    "--subject-prefix",
    default=None,
    metavar="TEXT",
    help="A tag rule's Subject prefix [[THREAT]].",
)
@click.option(
    "--disabled", is_flag=True, help="Add it disabled (it matches nothing until enabled)."
)
@db_option
def add_command(
    name: str,
    parts: tuple[str, ...],
    sources: tuple[str, ...],
    kinds: tuple[str, ...],
    action: str,
    position: int | None,
    subject_prefix: str | None,
    disabled: bool,
    db: str | None,
) -> None:
    """Add rule NAME (letters, digits, - _ .), last or at --position."""
    with policy_store(db, create=True) as store:
        rule = store.add_rule(
            name,
            parts=words(parts),
            sources=_sources(sources),
            kinds=words(kinds),
            action=action,
            position=position,
            enabled=not disabled,
            subject_prefix=subject_prefix,
        )
    click.echo(f"added rule {describe(rule)}")


@rule_group.command("edit")
@click.argument("name")
@click.option("--name", "new_name", default=None, metavar="NEW", help="Rename the rule.")
@click.option(
    "--part", "parts", multiple=True, metavar="PART", help=_PART_HELP + "; any: every part)."
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="SOURCE",
    help=_SOURCE_HELP + "; any: every source).",
)
@click.option(
    "--kind", "kinds", multiple=True, metavar="KIND", help=_KIND_HELP + "; any: every kind)."
)
@click.option("--action", default=None, metavar="ACTION", help=f"What is done: {_ACTION_HELP}.")
@click.option("--position", type=int, default=None, metavar="N", help="Move it to N (1: first).")
@click.option(
    "--subject-prefix",
    default=None,
    metavar="TEXT",
    help="A tag rule's Subject prefix ('': back to [THREAT]).",
)
@db_option
def edit_command(
    name: str,
    new_name: str | None,
    parts: tuple[str, ...],
    sources: tuple[str, ...],
    kinds: tuple[str, ...],
    action: str | None,
    position: int | None,
    subject_prefix: str | None,
    db: str | None,
) -> None:
    """Change rule NAME: only the options given."""
    changes: dict[str, Any] = {}
    if new_name is not None:
        changes["name"] = new_name
    if parts:
        changes["parts"] = words(parts)
    if sources:
        changes["sources"] = _sources(sources)
    if kinds:
        changes["kinds"] = words(kinds)
    if action is not None:
        changes["action"] = action
    if position is not None:
        changes["position"] = position
    if subject_prefix is not None:
        changes["subject_prefix"] = subject_prefix if subject_prefix.strip() else None
    from feedgate.mail.rules import PolicyConflict, PolicyError, PolicyNotFound

    with policy_store(db) as store:
        try:
            rule = store.edit_rule(name, **changes)  # no changes: the library refuses, as PATCH {}
        except PolicyError as exc:
            if not changes:
                said = exc.message.partition(":")[0]  # "nothing to change", in the options' words
                fail(f"{said}: give one or more of {EDIT_OPTIONS} ({ENABLE_HINT})", exc, status=2)
            renaming = exc.field == "name" and not isinstance(exc, PolicyNotFound)
            if renaming or isinstance(exc, PolicyConflict):
                refused(exc, "--name")  # the new name is at fault, not NAME
            raise
    click.echo(f"updated rule {describe(rule)}")


@rule_group.command("delete")
@click.argument("name")
@db_option
def delete_command(name: str, db: str | None) -> None:
    """Delete rule NAME (the rules after it move up)."""
    with policy_store(db) as store:
        store.delete_rule(name)
    click.echo(f"deleted rule {name}")


def _set_enabled(name: str, db: str | None, enabled: bool) -> None:
    with policy_store(db) as store:
        rule = store.set_enabled(name, enabled)
    click.echo(f"rule {rule.name} {'enabled' if enabled else 'disabled'}")


@rule_group.command("enable")
@click.argument("name")
@db_option
def enable_command(name: str, db: str | None) -> None:
    """Apply rule NAME again."""
    _set_enabled(name, db, True)


@rule_group.command("disable")
@click.argument("name")
@db_option
def disable_command(name: str, db: str | None) -> None:
    """Keep rule NAME (and its place) but let it match nothing."""
    _set_enabled(name, db, False)


def register(group: click.Group) -> None:
    """Add ``rule`` to the ``feedgate`` command."""
    group.add_command(rule_group)
