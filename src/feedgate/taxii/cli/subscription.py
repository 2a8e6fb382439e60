"""``taxii-subscription``: subscribe, unsubscribe, pause, resume, status (cabby's command)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import messages as tm
from ._common import (
    TAXII_10,
    Output,
    Services,
    UsageError,
    add_output_flags,
    base_parser,
    make_client,
    run,
)
from ._format import message_xml, subscription_response_text

ACTIONS = ["subscribe", "status", "pause", "resume", "unsubscribe"]
REQUIRED_SID = ["unsubscribe", "pause", "resume"]
ONLY_TAXII_11 = ["pause", "resume"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = base_parser(prog)
    parser.add_argument(
        "-a", "--action", dest="action", choices=ACTIONS, help="action to perform", required=True
    )
    parser.add_argument(
        "-c",
        "--collection",
        dest="collection_name",
        help="collection name fo subscription",
        required=True,
    )
    parser.add_argument(
        "-s", "--subscription", dest="subscription_id", help="ID of an existing subscription"
    )
    parser.add_argument(
        "--count-only",
        dest="count_only",
        action="store_true",
        help="if subscribing only for content counts",
    )
    add_output_flags(parser)
    return parser


def _run(args: argparse.Namespace, out: Output) -> None:
    if not args.subscription_id and args.action in REQUIRED_SID:
        raise UsageError(f"Action '{args.action}' requires subscription ID")
    if args.action in ONLY_TAXII_11 and args.version == TAXII_10:
        raise UsageError(f'Action "{args.action}" is not supported in TAXII v{args.version}')
    with make_client(args) as client:
        kind = tm.SVC_FEED_MANAGEMENT if args.version == TAXII_10 else tm.SVC_COLLECTION_MANAGEMENT
        uri = Services(client, args).address(kind)
        name, sid = args.collection_name, args.subscription_id
        if args.action == "subscribe":
            response = client.subscribe(name, count_only=args.count_only, uri=uri)
        elif args.action == "status":
            response = client.get_subscription_status(name, subscription_id=sid, uri=uri)
        elif args.action == "pause":
            response = client.pause_subscription(name, sid, uri=uri)
        elif args.action == "resume":
            response = client.resume_subscription(name, sid, uri=uri)
        else:
            response = client.unsubscribe(name, sid, uri=uri)
    if out.mode == "jsonl":
        out.json(response)
    elif out.mode == "xml-document":
        out.xml(message_xml(response))
    elif args.as_xml:
        out.print(message_xml(response))
    else:
        out.print(subscription_response_text(response))


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run(build_parser(prog), argv, _run, command="taxii-subscription")
