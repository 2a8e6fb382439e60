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


__all__ = ["COMMANDS", "command_main"]
