"""``taxii-discovery``: the services a TAXII server offers (cabby 0.1.23's command)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import Output, Services, add_output_flags, base_parser, make_client, run
from ._format import VERSIONS, service_text, service_xml


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = base_parser(prog)
    add_output_flags(parser)
    return parser


def _run(args: argparse.Namespace, out: Output) -> None:
    with make_client(args) as client:
        services = Services(client, args).discover(args.uri)
    version = VERSIONS[args.version]
    for service in services:
        if out.mode == "jsonl":
            out.json(service)
        elif out.mode == "xml-document":
            out.xml(service_xml(service, version))
        elif args.as_xml:
            out.print(service_xml(service, version))
        else:
            out.print(service_text(service, args.version == "1.1"))


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run(build_parser(prog), argv, _run, command="taxii-discovery")
