"""Every option of the ``feedgate`` commands here says what it does in ``--help``."""

from __future__ import annotations

import click
import pytest

from feedgate.cli import main


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(prefix or "feedgate", group)]
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
        else:
            found.append((path, command))
    return found


#: The commands of feedgate.cli, cli.stix, cli.serve, cli.db, the policy's (cli.rules,
#: cli.exceptions, cli.hits) and the console's (cli.admin).
OWN = [
    "feedgate", "stix", "stix extract", "serve", "up", "db", "db upgrade", "db current",
    "rule", "rule list", "rule show", "rule add", "rule edit", "rule delete", "rule enable",
    "rule disable", "exception", "exception list", "exception add", "exception delete", "hits",
    "admin", "admin add", "admin list", "admin delete", "admin set-password",
]  # fmt: skip


@pytest.mark.parametrize("path", OWN)
def test_every_option_has_help(path: str) -> None:
    """serve's --host and --port had none: `feedgate serve --help` listed them bare."""
    command = dict(commands(main))[path]
    bare = [
        opt.opts[0]
        for opt in command.params
        if isinstance(opt, click.Option) and not opt.hidden and not opt.help
    ]
    assert bare == []
