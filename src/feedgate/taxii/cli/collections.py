"""``taxii-collections``: the collections (1.1) or feeds (1.0) of a server (cabby's command).

Without ``--path`` it asks every collection (feed) management service that discovery lists, as
cabby does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import messages as tm
from ._common import Output, Services, add_output_flags, base_parser, make_client, run
from ._format import VERSIONS, collection_text, collection_xml


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = base_parser(prog)
    add_output_flags(parser)
    return parser


def _run(args: argparse.Namespace, out: Output) -> None:
    collections: list[tm.Collection] = []
    with make_client(args) as client:
        services = Services(client, args)
        if args.uri:
            collections.extend(client.get_collections(uri=services.url(args.uri)))
        else:
            kinds = (tm.SVC_COLLECTION_MANAGEMENT, tm.SVC_FEED_MANAGEMENT)
            for service in services.of_types(*kinds):
                collections.extend(client.get_collections(uri=services.url(service.address)))
    version = VERSIONS[args.version]
    for collection in collections:
        if out.mode == "jsonl":
            out.json(collection)
        elif out.mode == "xml-document":
            out.xml(collection_xml(collection, version))
        elif args.as_xml:
            out.print(collection_xml(collection, version))
        else:
            out.print(collection_text(collection, args.version == "1.1"))


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run(build_parser(prog), argv, _run, command="taxii-collections")
