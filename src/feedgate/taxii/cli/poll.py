"""``taxii-poll``: poll a collection and print or save its content blocks (cabby's command).

On a terminal, a progress line (blocks and bytes so far) is drawn on stderr while blocks arrive.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from .. import messages as tm
from ..client import TaxiiClient, TaxiiError, TransportError
from ._common import (
    TAXII_10,
    Output,
    Services,
    UsageError,
    add_output_flags,
    base_parser,
    make_client,
    parse_date,
    run,
)
from ._format import (
    VERSIONS,
    block_text,
    block_xml,
    content_element,
    dest_file_name,
    saved_content,
)

log = logging.getLogger("feedgate.taxii.cli.poll")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = base_parser(prog)
    parser.add_argument(
        "-c", "--collection", dest="collection", help="collection to poll", required=True
    )
    parser.add_argument("--dest-dir", dest="dest_dir", help="directory to save polled content")
    parser.add_argument(
        "-l",
        "--limit",
        dest="limit",
        type=int,
        default=None,
        help="limit the number of content blocks returned",
    )
    parser.add_argument(
        "-r",
        "--raw",
        dest="as_raw",
        action="store_true",
        help="output raw TAXII messages (use in combination with -x to see them as XML)",
    )
    parser.add_argument(
        "--begin",
        dest="begin",
        help="exclusive beginning of time window as ISO8601 formatted date",
    )
    parser.add_argument(
        "--end", dest="end", help="inclusive ending of time window as ISO8601 formatted date"
    )
    parser.add_argument(
        "-b",
        "--bindings",
        dest="bindings",
        help=(
            "Only return data for the listed content bindings, using "
            "a string with multiple items seperated by a ','. "
            "Defauls to all content."
        ),
    )
    parser.add_argument(
        "-s", "--subscription", dest="subscription_id", help="ID of an existing subscription"
    )
    parser.add_argument(
        "--count-only",
        dest="count_only",
        action="store_true",
        help="retrieve only count of content blocks",
    )
    add_output_flags(parser)
    return parser


class _Progress(Protocol):
    def advance(self, size: int) -> None: ...


class _NoProgress:
    def advance(self, size: int) -> None:
        pass


@contextmanager
def progress(collection: str) -> Iterator[_Progress]:
    """A rich progress line on stderr while polling, only when stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    if not (isatty and isatty()):
        yield _NoProgress()
        return
    from rich.console import Console
    from rich.progress import (
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        SpinnerColumn(),
        TextColumn("polling {task.description}:"),
        TextColumn("{task.fields[blocks]} blocks"),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    task = bar.add_task(collection, total=None, blocks=0)

    class _Bar:
        blocks = 0

        def advance(self, size: int) -> None:
            self.blocks += 1
            bar.update(task, advance=size, blocks=self.blocks)

    with bar:
        yield _Bar()


def _save(args: argparse.Namespace, block: tm.ContentBlock, version: str) -> None:
    dest_dir = os.path.abspath(args.dest_dir)
    path = os.path.abspath(os.path.join(dest_dir, dest_file_name(args.collection, block, version)))
    data = block_xml(block, version, pretty=True) if args.as_raw else saved_content(block, version)
    with open(path, "wb") as f:
        f.write(data)
    log.info("Content block saved to %s", path)


def _show(args: argparse.Namespace, out: Output, block: tm.ContentBlock, version: str) -> None:
    if out.mode == "jsonl":
        out.json(block)
    elif out.mode == "xml-document":
        if args.as_raw:
            out.xml(block_xml(block, version))
        else:
            elem = content_element(block.content)
            if elem is None:
                out.xml_text(block.content.decode("utf-8", "replace"))
            else:
                out.xml(block.content)
    elif args.as_raw and args.as_xml:
        out.write_bytes(block_xml(block, version) + b"\n")
    elif args.as_raw:
        out.print(block_text(block, version == tm.VID_TAXII_XML_11))
    else:
        out.write_bytes(block.content + b"\n")


def _run(args: argparse.Namespace, out: Output) -> None:
    if args.limit == 0:
        return
    begin = parse_date(args.begin, "--begin")
    end = parse_date(args.end, "--end")
    if args.count_only and args.version == TAXII_10:
        raise UsageError("--count-only needs TAXII 1.1 (TAXII 1.0 has no content counts)")
    if args.dest_dir and not os.path.isdir(args.dest_dir):
        raise UsageError(f"--dest-dir {args.dest_dir}: no such directory")
    bindings = args.bindings.split(",") if args.bindings else None
    log.info("Polling using data binding: %s", str(bindings) if bindings else "ALL")
    with make_client(args) as client:
        uri = Services(client, args).address(tm.SVC_POLL)
        try:
            _poll(args, out, client, uri, begin, end, bindings)
        except TransportError as exc:
            # a mistyped --path gets only a 404: say so, with what discovery there lists
            hint = client.poll_not_found_hint(exc, uri, check="--path") if args.uri else None
            if hint is None:
                raise
            raise TaxiiError(hint) from exc


def _poll(
    args: argparse.Namespace,
    out: Output,
    client: TaxiiClient,
    uri: str,
    begin: datetime | None,
    end: datetime | None,
    bindings: list[str] | None,
) -> None:
    """The poll itself (or the count), printing or saving what comes."""
    version = VERSIONS[args.version]
    query: dict[str, Any] = dict(
        begin_date=begin,
        end_date=end,
        subscription_id=args.subscription_id,
        uri=uri,
        content_bindings=bindings,
    )  # the same for a count and a poll
    if args.count_only:
        count = client.get_content_count(args.collection, **query)
        if count is not None:
            log.info("Content blocks count: %s, is partial: %s", count.count, count.partial)
        else:
            log.warning("Count value was not returned")
        if out.mode == "jsonl":
            out.json(count)
        return
    blocks = client.poll(args.collection, **query)
    counter = 0
    try:
        with progress(args.collection) as bar:
            for counter, block in enumerate(blocks, 1):
                bar.advance(len(block.content))
                if args.dest_dir:
                    _save(args, block, version)
                else:
                    _show(args, out, block, version)
                if args.limit and counter >= args.limit:
                    break
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # end the HTTP exchange before the client goes
    log.info("%d blocks polled", counter)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run(build_parser(prog), argv, _run, command="taxii-poll")
