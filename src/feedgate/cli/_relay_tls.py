"""``--relay-tls LEVEL`` and ``--relay-ca-file PEM``: TLS towards the relay, one definition for
``feedgate gateway`` and ``feedgate quarantine release`` (levels named after Postfix's
``smtp_tls_security_level``; :mod:`feedgate.mail.relay` says what each does).

The gateway's default is ``may``. A release has none of its own: without the options it uses
the TLS recorded with the message (the gateway's, when it quarantined it), so the options are
given only to choose otherwise, and then they win."""

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
_LEVELS_HELP: Final = (
    "TLS to the relay, as Postfix's smtp_tls_security_level: may = STARTTLS when offered,"
    " certificate unchecked; encrypt = TLS or 451; verify = TLS with a trusted certificate for"
    " the relay's name, or 451; none = plain text."
)
_CA_HELP: Final = "With --relay-tls verify: trust only these CA certificates (not the system's)."


def _options(func: F, *, default: str | None, tls_help: str) -> F:
    func = click.option(
        "--relay-ca-file",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="PEM",
        help=_CA_HELP,
    )(func)
    return click.option(
        "--relay-tls",
        type=click.Choice(LEVELS, case_sensitive=False),
        default=default,
        show_default=default is not None,
        help=tls_help,
    )(func)


def relay_tls_options(func: F) -> F:
    """Add ``--relay-tls`` (default ``may``) and ``--relay-ca-file`` (parameters
    ``relay_tls``, ``relay_ca_file``); :func:`make_relay_tls` turns them into a ``RelayTls``."""
    return _options(func, default="may", tls_help=_LEVELS_HELP)


def release_tls_options(func: F) -> F:
    """The same options for a release, with no default: :func:`make_release_tls` gives None
    when neither is given (the TLS recorded with the message is used)."""
    return _options(
        func,
        default=None,
        tls_help=_LEVELS_HELP
        + " [default: the TLS recorded with the message: the gateway's --relay-tls and"
        " --relay-ca-file when it quarantined it, may for the milter's; given, this wins]",
    )


def make_relay_tls(level: str, ca_file: str | None) -> RelayTls:
    """The ``RelayTls`` of the options, or a usage error naming the option (exit 2)."""
    from feedgate.mail.relay import RelayTlsError, relay_tls

    try:
        return relay_tls(level, ca_file)
    except RelayTlsError as exc:
        hint = "--relay-ca-file" if ca_file is not None else "--relay-tls"
        raise click.BadParameter(str(exc), param_hint=hint) from None


def make_release_tls(level: str | None, ca_file: str | None) -> RelayTls | None:
    """The ``RelayTls`` of a release's options; None when neither is given (the recorded TLS
    is used). A CA file alone is a usage error: it means ``verify``, which is said, not
    guessed."""
    if level is None:
        if ca_file is not None:
            raise click.BadParameter(
                "a CA file is used only to verify the relay's certificate: give --relay-tls"
                " verify with it (without either, the TLS recorded with the message is used)",
                param_hint="--relay-ca-file",
            )
        return None
    return make_relay_tls(level, ca_file)
