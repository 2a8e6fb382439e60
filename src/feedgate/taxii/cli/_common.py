"""What the taxii-* commands share: cabby's flags, logging, the client, errors, output.

Each command module builds its parser from :func:`base_parser` (cabby's common flags, spelled
and described exactly as cabby 0.1.23 has them), then calls :func:`run` with a runner that does
the work. :func:`run` owns logging (cabby's ``asctime LEVEL: message`` lines on stderr), the
exit status (0 success, 1 failure, 2 bad usage) and the one-line error report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any, Final, TextIO
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

from ...redaction import hide_url_credentials
from .. import messages as tm
from ..client import DEFAULT_TIMEOUT, StatusError, TaxiiClient
from ._format import VERSIONS, jsonable, status_text

log = logging.getLogger("feedgate.taxii.cli")

TAXII_10: Final = "1.0"
TAXII_11: Final = "1.1"
DEFAULT_VERSION: Final = TAXII_11
VERSION_CHOICES: Final = [TAXII_10, TAXII_11]

#: Namespace of the wrapper element of ``--as-xml-document``.
XML_DOCUMENT_NS: Final = "urn:feedgate:taxii-cli:1"


class UsageError(Exception):
    """The command line asks for something impossible: exit status 2."""


# --- the parser ---------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """cabby's formatter (every flag's default shown), except where a help text states its
    default itself: ``--timeout`` has no value of its own, yet the client's default applies."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help
        return super()._get_help_string(action)


def base_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """cabby's common flags, in cabby's order, with its help texts and defaults."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="TAXII client",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--host", dest="host", help="host where the TAXII Service is hosted")
    parser.add_argument(
        "--port", dest="port", type=int, help="port where the TAXII Service is hosted"
    )
    parser.add_argument("--discovery", dest="discovery", help="path to a TAXII Discovery service")
    parser.add_argument(
        "--path",
        dest="uri",
        help="absolute path (as URL) or relative path to a specific TAXII Service",
    )
    parser.add_argument(
        "--https", dest="https", action="store_true", help="if the client should use HTTPS"
    )
    parser.add_argument(
        "--verify",
        dest="verify",
        help=(
            'Set to "no" to skip checking the host\'s SSL certificate.'
            " You can also pass the path to a CA file for private certs."
            ' Defaults to "yes".'
        ),
    )
    connect, read = DEFAULT_TIMEOUT
    parser.add_argument(
        "--timeout",
        dest="timeout",
        type=int,
        help=(
            "HTTP request timeout in seconds"
            f" (default: {read:g} to read an answer, {connect:g} to connect)"
        ),
    )
    parser.add_argument("--ca-cert", dest="ca_cert", help="CA certificate file")
    parser.add_argument("--cert", dest="cert", help="certificate file")
    parser.add_argument("--key", dest="key", help="private key file")
    parser.add_argument("--key-password", dest="key_password", help="private key password")
    parser.add_argument("--username", dest="username", help="username for authentication")
    parser.add_argument("--password", dest="password", help="password for authentication")
    parser.add_argument("--jwt-auth", dest="jwt_auth_url", help="JWT authentication URL")
    parser.add_argument(
        "--proxy-url",
        dest="proxy_url",
        help=(
            "proxy address formatted as URL. Can be set to 'noproxy' "
            "to force library to not use any proxy"
        ),
    )
    parser.add_argument(
        "--proxy-type", dest="proxy_type", choices=["http", "https"], help="proxy type"
    )
    parser.add_argument(
        "--header",
        dest="headers",
        action="append",
        help="header to send with the request, as header:value pair",
    )
    parser.add_argument("-v", "--verbose", dest="verbose", action="store_true", help="verbose mode")
    parser.add_argument("-x", "--as-xml", dest="as_xml", action="store_true", help="output raw XML")
    parser.add_argument(
        "-t",
        "--taxii-version",
        dest="version",
        default=DEFAULT_VERSION,
        choices=VERSION_CHOICES,
        help="TAXII version to use",
    )
    return parser


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """feedgate's additions, after cabby's flags: machine-readable stdout (not in cabby)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--as-xml-document",
        dest="output",
        action="store_const",
        const="xml-document",
        default=argparse.SUPPRESS,
        help=(
            "(feedgate) print one well-formed XML document: the XML of every entity inside a"
            f' <fg:output xmlns:fg="{XML_DOCUMENT_NS}"> element'
        ),
    )
    group.add_argument(
        "--jsonl",
        dest="output",
        action="store_const",
        const="jsonl",
        default=argparse.SUPPRESS,
        help="(feedgate) print one JSON object per line, one per entity",
    )


def parse_headers(raw: Sequence[str] | None) -> dict[str, str]:
    """``--header name:value`` pairs; quotes around the value are dropped, as cabby does."""
    headers: dict[str, str] = {}
    for line in raw or ():
        name, sep, value = line.partition(":")
        if not sep:
            raise UsageError(f"--header {line!r}: expected header:value")
        headers[name.strip()] = value.strip().strip("\"'")
    return headers


def parse_date(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 date or timestamp; one without a zone is UTC (as in cabby)."""
    if not text:
        return None
    raw = text.strip()
    if raw[-1:] in "zZ":
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"{flag}: not an ISO 8601 date: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- logging ------------------------------------------------------------------------------

_COLORS: Final = {
    logging.DEBUG: "\x1b[36m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[31m",
}
_RESET: Final = "\x1b[0m"
_WHITE: Final = "\x1b[37m"


class _Formatter(logging.Formatter):
    """cabby's layout: ``asctime [name] LEVEL: message``; its colours on a terminal only."""

    def __init__(self, verbose: bool, color: bool) -> None:
        super().__init__("%(asctime)s %(name)s" if verbose else "%(asctime)s")
        self._color = color

    def format(self, record: logging.LogRecord) -> str:
        head = super().format(_bare(record))
        level = f"{record.levelname}:"
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        message = hide_url_credentials(message)  # a URL given with KEY:PASS@ in it
        if self._color:
            color = _COLORS.get(record.levelno, "")
            return f"{head} {color}{level}{_RESET} {_WHITE}{message}{_RESET}"
        return f"{head} {level} {message}"


def _bare(record: logging.LogRecord) -> logging.LogRecord:
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg, copy.args, copy.exc_info, copy.exc_text = "", None, None, None
    return copy


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (rich's progress redirects it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _use_color() -> bool:
    if "NO_COLOR" in os.environ:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def logging_to_stderr(verbose: bool) -> Iterator[None]:
    """Configure the root logger as cabby does, for the duration of one command."""
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(verbose, _use_color()))
    old_level = root.level
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(handler)
    quiet = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    old_quiet = [q.level for q in quiet]
    if not verbose:
        for q in quiet:  # httpx logs every request at INFO; cabby's requests does not
            q.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for q, level in zip(quiet, old_quiet, strict=True):
            q.setLevel(level)


# --- the client ---------------------------------------------------------------------------


class CliClient(TaxiiClient):
    """The library's client as the CLIs use it.

    cabby's ``Sending <message> to <url>`` lines (and, with ``-v``, the messages themselves)
    come from the library's own loggers, ``feedgate.taxii.requests`` and ``feedgate.taxii.wire``.
    """


def prepare_url(uri: str, host: str | None, port: int | None, https: bool) -> str:
    """cabby's address rule: scheme and host from the URL or the flags; ``--port`` wins."""
    parts = urlsplit(uri)
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise UsageError(f'Scheme "{parts.scheme}" is not supported. Use one of: http, https')
    use_https = https or parts.scheme == "https"
    scheme = parts.scheme or ("https" if use_https else "http")
    hostname = parts.hostname or host
    if not hostname:
        raise UsageError(f"Host name is not provided: {uri}")
    try:
        url_port = parts.port
    except ValueError:
        raise UsageError(f"bad port in {uri!r}") from None
    number = port or url_port or (443 if scheme == "https" else 80)
    if ":" in hostname and not hostname.startswith("["):
        hostname = f"[{hostname}]"
    default = 443 if scheme == "https" else 80
    netloc = hostname if number == default else f"{hostname}:{number}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def make_client(args: argparse.Namespace, **overrides: Any) -> CliClient:
    """A client configured from cabby's common flags."""
    verify = (args.verify or "yes").strip()
    ca_cert = args.ca_cert
    verify_ssl = True
    if verify.lower() == "no":
        verify_ssl, ca_cert = False, None  # an explicit "no" wins over --ca-cert
    elif verify.lower() != "yes":
        ca_cert = ca_cert or verify  # a path to a CA bundle; --ca-cert first, as in cabby
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    if args.timeout is not None:
        if args.timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        timeout = float(args.timeout)
    jwt = args.jwt_auth_url
    if jwt:
        jwt = prepare_url(jwt, args.host, args.port, args.https)
    options: dict[str, Any] = dict(
        host=args.host,
        port=args.port,
        use_https=args.https,
        discovery_path=None,
        version=args.version,
        headers=parse_headers(args.headers),
        username=args.username,
        password=args.password,
        jwt_auth_url=jwt,
        cert_file=args.cert,
        key_file=args.key,
        key_password=args.key_password,
        ca_cert=ca_cert,
        verify_ssl=verify_ssl,
        proxy_url=args.proxy_url,
        proxy_type=args.proxy_type,
        timeout=timeout,
        keep_raw=bool(args.verbose),  # for the DEBUG log of each response, as cabby's -v
    )
    options.update(overrides)
    return CliClient(**options)


class Services:
    """Discovery done once (as cabby caches it) and cabby's choice of a service by type."""

    def __init__(self, client: TaxiiClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self._found: list[tm.ServiceInstance] | None = None

    def url(self, uri: str) -> str:
        return prepare_url(uri, self.args.host, self.args.port, self.args.https)

    def discover(self, uri: str | None = None) -> list[tm.ServiceInstance]:
        """Services of the discovery service at ``uri`` (default: ``--discovery``)."""
        implicit = uri is None
        if implicit and self._found is not None:
            return self._found
        where = uri or self.args.discovery
        if not where:
            raise UsageError("Discovery service URI is not specified")
        try:
            services = self.client.discover_services(uri=self.url(where))
        except Exception:
            if implicit:
                log.error("Can not autodiscover advertised services")
            raise
        log.info("%d services discovered", len(services))
        self._found = services
        return services

    def of_types(self, *types: str) -> list[tm.ServiceInstance]:
        """Advertised services of these types that speak our TAXII version.

        A server may list each service once per protocol (HTTP and HTTPS); those of the protocol
        we reached discovery with are preferred, so a plain-HTTP run does not wander to HTTPS.
        """
        binding = VERSIONS[self.args.version]
        found = [
            s
            for s in self.discover()
            if s.service_type in types and (not s.message_bindings or binding in s.message_bindings)
        ]
        scheme = urlsplit(self.url(self.args.discovery)).scheme if self.args.discovery else ""
        protocol = tm.VID_TAXII_HTTPS_10 if scheme == "https" else tm.VID_TAXII_HTTP_10
        same = [s for s in found if s.protocol_binding == protocol]
        return same or found

    def address(self, service_type: str) -> str:
        """``--path``, else the one advertised service of that type."""
        if self.args.uri:
            return self.url(self.args.uri)
        candidates = self.of_types(service_type)
        if not candidates:
            raise LookupError(f"Service with type '{service_type}' is not advertised")
        if len(candidates) > 1:
            raise LookupError(
                f"{len(candidates)} services found with type '{service_type}'."
                " Specify the exact URI"
            )
        return self.url(candidates[0].address)


# --- output -------------------------------------------------------------------------------


class Output:
    """stdout in one of three shapes: cabby's text, one XML document, or JSON lines."""

    def __init__(self, mode: str, command: str, stream: TextIO | None = None) -> None:
        self.mode = mode
        self.command = command
        self._stream = stream if stream is not None else sys.stdout
        self._open = False

    def write_bytes(self, data: bytes) -> None:
        binary: IO[bytes] | None = getattr(self._stream, "buffer", None)
        if binary is not None:
            self._stream.flush()
            binary.write(data)
            binary.flush()
        else:
            self._stream.write(data.decode("utf-8", "replace"))
            self._stream.flush()

    def print(self, text: str) -> None:
        """Python's ``print(text)``, as cabby uses it."""
        self.write_bytes(text.encode("utf-8") + b"\n")

    def begin(self) -> None:
        if self.mode == "xml-document" and not self._open:
            self._open = True
            self.write_bytes(
                b'<?xml version="1.0" encoding="UTF-8"?>\n'
                + f"<fg:output xmlns:fg={quoteattr(XML_DOCUMENT_NS)}"
                f" command={quoteattr(self.command)}>\n".encode()
            )

    def end(self) -> None:
        if self._open:
            self._open = False
            self.write_bytes(b"</fg:output>\n")

    def xml(self, data: bytes | str) -> None:
        """One element (XML without a declaration) inside the document."""
        self.begin()
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.write_bytes(raw.rstrip(b"\n") + b"\n")

    def xml_text(self, text: str) -> None:
        """Content that is not XML, as escaped text in an ``fg:text`` element."""
        self.xml(f"<fg:text>{escape(text)}</fg:text>")

    def json(self, value: Any) -> None:
        self.write_bytes(json.dumps(jsonable(value), ensure_ascii=False).encode("utf-8") + b"\n")


# --- running a command --------------------------------------------------------------------

Runner = Callable[[argparse.Namespace, Output], None]


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    runner: Runner,
    *,
    command: str,
    needs_address: bool = True,
) -> int:
    """Parse, run, report: exit status 0 success, 1 failure, 2 bad usage."""
    args = parser.parse_args(argv)  # argparse exits with 2 on bad usage
    output = Output(getattr(args, "output", "text"), command)
    with logging_to_stderr(args.verbose):
        try:
            if needs_address and not args.uri and not args.discovery:
                raise UsageError(
                    "Either Discovery Service path '--discovery'"
                    " or specific service path '--path' need to be provided"
                )
            if output.mode == "xml-document":
                output.begin()  # an empty result is still one document
            try:
                runner(args, output)
            finally:
                output.end()
        except UsageError as exc:
            log.error("%s", exc)
            return 2
        except BrokenPipeError:
            _quiet_stdout()  # the reader (`| head`) has had enough: stop quietly, as cat does
            return 0
        except KeyboardInterrupt:
            log.error("interrupted")
            return 130
        except StatusError as exc:
            log.error("%s", status_text(exc.status), exc_info=args.verbose)
            return 1
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            if isinstance(exc, OSError) and exc.filename and exc.strerror:
                text = f"{exc.strerror}: {exc.filename}"
            log.error("%s", text, exc_info=args.verbose)
            return 1
    return 0


def _quiet_stdout() -> None:
    """stdout was closed by the reader (``| head``): end without a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
