"""``taxii-proxy``: poll a collection on one server and push each block to another (cabby's).

Its flags are cabby's own set (every address a full URL, no TLS or proxy options); what it does
better: failures end with a non-zero exit status, and a poll's blocks are pushed as they arrive.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from .. import messages as tm
from ._common import (
    DEFAULT_VERSION,
    VERSION_CHOICES,
    CliClient,
    Output,
    parse_date,
    parse_headers,
    run,
)

log = logging.getLogger("feedgate.taxii.cli.proxy")

DEFAULT_BINDING = tm.CB_STIX_XML_111
BINDING_CHOICES = [
    tm.CB_STIX_XML_111,
    tm.CB_CAP_11,
    tm.CB_SMIME,
    tm.CB_STIX_XML_12,
    tm.CB_STIX_XML_10,
    tm.CB_STIX_XML_101,
    tm.CB_STIX_XML_11,
    tm.CB_XENC_122002,
]


def _service_arguments(parser: argparse.ArgumentParser, ident: str, descriptor: str) -> None:
    parser.add_argument(
        f"--{ident}-path",
        dest=f"{ident}_path",
        help=f"Address of the {descriptor} service",
        required=True,
    )
    parser.add_argument(
        f"--{ident}-collection",
        dest=f"{ident}_collection",
        help=f"The collection to {descriptor}",
        required=True,
    )
    parser.add_argument(
        f"--{ident}-taxii-version",
        dest=f"{ident}_taxii_version",
        help=f"The TAXII version to use for {descriptor}",
        default=DEFAULT_VERSION,
        choices=VERSION_CHOICES,
    )
    parser.add_argument(
        f"--{ident}-username",
        dest=f"{ident}_username",
        help=f"username for {descriptor} authentication",
    )
    parser.add_argument(
        f"--{ident}-password",
        dest=f"{ident}_password",
        help=f"password for {descriptor} authentication",
    )
    parser.add_argument(
        f"--{ident}-jwt-auth",
        dest=f"{ident}_jwt_auth_url",
        help=f"JWT authentication URL for {descriptor}",
    )
    parser.add_argument(
        f"--{ident}-header",
        dest=f"{ident}_headers",
        action="append",
        help=f"header to send with the {descriptor} request, as header:value pair",
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="TAXII Proxy Client",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _service_arguments(parser, "inbox", "inbox")
    _service_arguments(parser, "poll", "polling")
    parser.add_argument("-v", "--verbose", dest="verbose", action="store_true", help="verbose mode")
    parser.add_argument(
        "--binding",
        dest="binding",
        default=DEFAULT_BINDING,
        choices=BINDING_CHOICES,
        help="content binding",
    )
    parser.add_argument(
        "-l",
        "--limit",
        dest="limit",
        type=int,
        default=None,
        help="limit the number of content blocks to push",
    )
    parser.add_argument(
        "--begin",
        dest="begin",
        help="exclusive beginning of time window as ISO8601 formatted date",
    )
    parser.add_argument(
        "--end", dest="end", help="inclusive ending of time window as ISO8601 formatted date"
    )
    return parser


def _client(args: argparse.Namespace, ident: str) -> CliClient:
    return CliClient(
        version=getattr(args, f"{ident}_taxii_version"),
        headers=parse_headers(getattr(args, f"{ident}_headers")),
        username=getattr(args, f"{ident}_username"),
        password=getattr(args, f"{ident}_password"),
        jwt_auth_url=getattr(args, f"{ident}_jwt_auth_url"),
    )


def _run(args: argparse.Namespace, out: Output) -> None:
    begin = parse_date(args.begin, "--begin")
    end = parse_date(args.end, "--end")
    if args.limit != 0:
        with _client(args, "poll") as poller, _client(args, "inbox") as inbox:
            blocks = poller.poll(
                args.poll_collection,
                begin_date=begin,
                end_date=end,
                uri=args.poll_path,
                content_bindings=[args.binding],
            )
            counter = 0
            try:
                for counter, block in enumerate(blocks, 1):
                    log.debug("got block %s", block.content.decode("utf-8", "replace"))
                    inbox.push(
                        block.content,
                        args.binding,
                        uri=args.inbox_path,
                        timestamp=datetime.now(UTC),
                        collection_names=[args.inbox_collection],
                    )
                    if args.limit and counter >= args.limit:
                        break
            finally:
                close = getattr(blocks, "close", None)
                if close is not None:
                    close()
            log.info("%d blocks polled", counter)
    log.info("Content block successfully pushed")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run(build_parser(prog), argv, _run, command="taxii-proxy", needs_address=False)
