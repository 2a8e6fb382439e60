"""cabby-compatible TAXII command-line tools: ``taxii-discovery``, ``taxii-collections``,
``taxii-poll``, ``taxii-push``, ``taxii-subscription``, ``taxii-proxy``.

They take cabby 0.1.23's flags and print its text (docs/cabby-cli.md has the facts and the list
of what we do differently). Each module has ``main(argv=None, prog=None) -> int`` (the exit
status) for its console script; :func:`register` adds them to the ``feedgate`` command as
``feedgate taxii <command>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Final

import click

#: ``feedgate taxii <name>`` -> (module, console script name).
COMMANDS: Final = {
    "discovery": ("discovery", "taxii-discovery"),
    "collections": ("collections", "taxii-collections"),
    "poll": ("poll", "taxii-poll"),
    "push": ("push", "taxii-push"),
    "subscription": ("subscription", "taxii-subscription"),
    "proxy": ("proxy", "taxii-proxy"),
}

Main = Callable[[Sequence[str] | None, str | None], int]


def command_main(name: str) -> Main:
    """The ``main`` function of a command (imported when first used)."""
    module_name, _ = COMMANDS[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    main: Main = module.main
    return main


def _passthrough(name: str, script: str) -> click.Command:
    @click.command(
        name=name,
        help=f"Same flags and output as cabby's {script} (see: feedgate taxii {name} --help).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx: click.Context, args: tuple[str, ...]) -> None:
        ctx.exit(command_main(name)(list(args), f"feedgate taxii {name}"))

    return command


def register(group: click.Group) -> None:
    """Add ``taxii`` (with one subcommand per tool) to ``group``; arguments go to argparse."""

    @group.group(name="taxii")
    def taxii() -> None:
        """cabby-compatible TAXII 1.x client commands."""

    for name, (_, script) in COMMANDS.items():
        taxii.add_command(_passthrough(name, script))


__all__ = ["COMMANDS", "command_main", "register"]
