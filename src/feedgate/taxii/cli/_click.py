"""``feedgate taxii <command>``: the cabby-compatible tools under the ``feedgate`` command.

Kept apart from the tools themselves so that ``taxii-poll`` and friends never import click
(their start-up time and memory are part of what they are compared on).
"""

from __future__ import annotations

import click

from . import COMMANDS, command_main


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
