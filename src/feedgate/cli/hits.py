"""``feedgate hits``: how often each source's observables were enforced in mail, and the
observables hit most, from the match log (:meth:`~feedgate.mail.policy_store.PolicyStore.hits`).
A source in monitor mode acts on nothing: its hits are the ones it *would have* had, shown in
rows of their own (MODE ``monitor``), so they never swell an enforced count; ``--mode`` shows one
mode only.

``--since`` is a duration as the source options take them (``7d``, ``12h``, ``1h30m``) counted
back from now, or ``all``; ``--format json`` prints what ``GET /api/v1/hits`` returns.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from ._policy import db_option, format_option, policy_store, print_table, refused


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command("hits")
@click.option("--source", default=None, metavar="NAME", help="Only this source's hits.")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    metavar="DUR",
    help="Hits in this long up to now (e.g. 12h, 7d, 2w), or all.",
)
@click.option(
    "--top",
    default=None,
    metavar="N",
    help="How many of the observables hit most to list [10] (the most: see the refusal).",
)
@click.option(
    "--mode",
    default=None,
    metavar="enforce|monitor",
    help="Only the hits that were enforced, or only those of sources in monitor mode (what"
    " they would have done) [both, apart].",
)
@format_option("table", "json", default="table")
@db_option
def hits_command(
    source: str | None,
    since: str,
    top: str | None,
    mode: str | None,
    format_: str,
    db: str | None,
) -> None:
    """Hits per source and the observables hit most, enforced and monitored apart."""
    from feedgate.feeds.sources import SourceError
    from feedgate.mail.policy_store import DEFAULT_TOP, check_mode, check_top
    from feedgate.mail.rules import PolicyError
    from feedgate.web.api_policy import since_moment

    try:
        start = since_moment(since, datetime.now(UTC))
        count = check_top(
            DEFAULT_TOP if top is None else top
        )  # before the database is opened: bad input is said first
        wanted = check_mode(mode)
    except (SourceError, PolicyError) as exc:
        refused(exc)
    with policy_store(db) as store:
        hits = store.hits(source, start, count, wanted)
    if format_ == "json":
        click.echo(json.dumps(hits.to_dict(), ensure_ascii=False, indent=2))
        return
    window = "in the whole log" if start is None else f"since {_when(start)}"
    if wanted is not None:
        window += f" in {wanted} mode"
    if not hits.sources:
        click.echo(f"no hits {window}" + (f" for source {source}" if source else ""))
        return
    click.echo(f"hits {window}:")
    print_table(
        ["SOURCE", "MODE", "HITS", "MESSAGES", "LAST"],
        [[s.source, s.mode, str(s.hits), str(s.messages), _when(s.last)] for s in hits.sources],
    )
    if hits.top:
        click.echo("")
        click.echo(f"top {len(hits.top)} observables:")
        print_table(
            ["HITS", "SOURCE", "MODE", "KIND", "LAST", "VALUE"],
            [[str(t.hits), t.source, t.mode, t.kind, _when(t.last), t.value] for t in hits.top],
        )
    if any(s.mode == "monitor" for s in hits.sources):
        click.echo("")
        click.echo(
            "mode monitor: hits of a source in monitor mode, what it would have done; nothing"
            " was ('feedgate source edit NAME --mode enforce' makes it act)"
        )


def register(group: click.Group) -> None:
    """Add ``hits`` to the ``feedgate`` command."""
    group.add_command(hits_command)
