"""``--relay-tls LEVEL`` and ``--relay-ca-file PEM``: TLS towards the relay, one definition for
``feedgate gateway`` and ``feedgate quarantine release`` (levels named after Postfix's
``smtp_tls_security_level``; :mod:`feedgate.mail.relay` says what each does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

if TYPE_CHECKING:
    from feedgate.mail.relay import RelayTls

F = TypeVar("F", bound=Callable[..., Any])

#: ``feedgate.mail.relay.TLS_LEVELS``, spelled here so that ``--help`` imports no ssl (a test
#: holds the two equal).
LEVELS: Final = ("none", "may", "encrypt", "verify")


def relay_tls_options(func: F) -> F:
    """Add ``--relay-tls`` and ``--relay-ca-file`` (parameters ``relay_tls``,
    ``relay_ca_file``); :func:`make_relay_tls` turns them into a ``RelayTls``."""
    func = click.option(
        "--relay-ca-file",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="PEM",
        help="With --relay-tls verify: trust only these CA certificates (not the system's).",
    )(func)
    return click.option(
        "--relay-tls",
        type=click.Choice(LEVELS, case_sensitive=False),
        default="may",
        show_default=True,
        help="TLS to the relay, as Postfix's smtp_tls_security_level: may = STARTTLS when"
        " offered, certificate unchecked; encrypt = TLS or 451; verify = TLS with a trusted"
        " certificate for the relay's name, or 451; none = plain text.",
    )(func)


def make_relay_tls(level: str, ca_file: str | None) -> RelayTls:
    """The ``RelayTls`` of the options, or a usage error naming the option (exit 2)."""
    from feedgate.mail.relay import RelayTlsError, relay_tls

    try:
        return relay_tls(level, ca_file)
    except RelayTlsError as exc:
        hint = "--relay-ca-file" if ca_file is not None else "--relay-tls"
        raise click.BadParameter(str(exc), param_hint=hint) from None
