"""``taxii-push``: push one content file to an inbox service (cabby's command)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from .. import messages as tm
from ._common import TAXII_10, Output, Services, UsageError, base_parser, make_client, run

log = logging.getLogger("feedgate.taxii.cli.push")

DEFAULT_BINDING = tm.CB_STIX_XML_111


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = base_parser(prog)
    parser.add_argument(
        "-f",
        "--content-file",
        dest="content_file",
        help="file with the content to send",
        required=True,
    )
    parser.add_argument(
        "--binding", dest="binding", default=DEFAULT_BINDING, help="content binding"
    )
    parser.add_argument(
        "--subtype", dest="subtypes", action="append", help="the subtype of the content binding"
    )
    parser.add_argument(
        "--dest", dest="collections", action="append", help="names of the destination collections"
    )
    return parser


def _run(args: argparse.Namespace, out: Output) -> None:
    if args.version == TAXII_10 and args.collections:
        raise UsageError("TAXII 1.0 has no destination collections (--dest)")
    if args.version == TAXII_10 and args.subtypes:
        raise UsageError("TAXII 1.0 has no content binding subtypes (--subtype)")
    with open(args.content_file, "rb") as f:
        content = f.read()
    binding = tm.ContentBinding(binding_id=args.binding, subtypes=tuple(args.subtypes or ()))
    with make_client(args) as client:
        uri = Services(client, args).address(tm.SVC_INBOX)
        client.push(
            content,
            binding,
            uri=uri,
            timestamp=datetime.now(UTC),
            collection_names=args.collections,
        )
    log.info("Content block successfully pushed")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run(build_parser(prog), argv, _run, command="taxii-push")
