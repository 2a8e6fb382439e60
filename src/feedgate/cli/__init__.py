"""The ``feedgate`` command: parse arguments, call a library function, report in one line.

One module per command group, each with a ``register(group)`` that adds its commands to
:func:`main`; the commands stay thin (the work is in the library packages, which never import
this one). The cabby-compatible TAXII tools stay with their protocol package
(:mod:`feedgate.taxii.cli`) and are only registered here.

Exit status: 0 success, 1 a failure the user must look at, 2 bad usage (click's own). Errors go
to stderr as ``feedgate: error: ...`` (:mod:`.errors`); ``-v`` adds the stack trace.
"""

from __future__ import annotations

import click

from feedgate import __version__
from feedgate.taxii.cli._click import register as register_taxii

from .admin import register as register_admin
from .db import register as register_db
from .exceptions import register as register_exceptions
from .gateway import register as register_gateway
from .hits import register as register_hits
from .hub import register as register_hub
from .milter import register as register_milter
from .observables import register as register_observables
from .quarantine import register as register_quarantine
from .retro import register as register_retro
from .rules import register as register_rules
from .scan import register as register_scan
from .serve import register as register_serve
from .sources import register as register_sources
from .stix import register as register_stix

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show stack traces with errors.")
@click.version_option(__version__, prog_name="feedgate")
def main(verbose: bool) -> None:
    """feedgate: External Threat Feeds for email."""
    # The flag is read back from the root context where it is needed (errors.verbose).


register_stix(main)  # feedgate stix extract
register_taxii(main)  # feedgate taxii discovery|collections|poll|push|subscription|proxy
register_hub(main)  # feedgate hub serve|seed|user|key|pulse
register_sources(main)  # feedgate source add|list|show|edit|delete|enable|disable | poll
register_observables(main)  # feedgate observables | log
register_rules(main)  # feedgate rule list|show|add|edit|delete|enable|disable
register_exceptions(main)  # feedgate exception list|add|delete
register_hits(main)  # feedgate hits
register_serve(main)  # feedgate serve | up
register_db(main)  # feedgate db upgrade | current
register_scan(main)  # feedgate scan
register_gateway(main)  # feedgate gateway
register_quarantine(main)  # feedgate quarantine list|show|release|delete
register_retro(main)  # feedgate retro
register_milter(main)  # feedgate milter
register_admin(main)  # feedgate admin add|list|delete|set-password
