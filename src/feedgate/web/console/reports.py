"""The Reports page (``/reports``): charts an admin would rather look at than read, each also
as a table: messages matched per source per day, messages per action per day, the observables
matched most, and the observables held per source and kind.

The numbers come from the calls the REST API and the CLI use: the per-source totals and the top
observables are :meth:`~feedgate.mail.policy_store.PolicyStore.hits` (``GET /api/v1/hits``,
``feedgate hits``) over the window :func:`~feedgate.web.api_policy.since_moment` reads (default
:data:`~feedgate.web.api_policy.DEFAULT_SINCE`, as the API's); the days are
:func:`feedgate.mail.match_days.match_days` over the same rows and window; the observables held
are :meth:`~feedgate.feeds.store.FeedStore.count_observables` (``GET /api/v1/sources`` counts).
Days run to the console's clock (``ConsoleContext.now``).

The store keeps the observables a source holds *now* and no history of those counts (an expired
row keeps no time of expiry), so "held" is today's picture, and the page says so rather than
draw a history it does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from feedgate.feeds.sources import SourceError
from feedgate.mail.match_days import MatchDays, days, match_days
from feedgate.mail.policy_store import DEFAULT_TOP
from feedgate.web.api_policy import DEFAULT_SINCE, since_moment

from .auth import page_route
from .charts import colours_for, hbars, stacked
from .context import ConsoleContext, NavItem, Page
from .render import render

__all__ = ["PAGE", "PATH", "routes"]

PATH: Final = "/reports"


def _series_name(name: str, mode: str) -> str:
    return name if mode == "enforce" else f"{name} ({mode})"


def _table(
    day_list: Sequence[date], cells: dict[str, dict[date, int]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (the series) and one row per day with each series' count and the day's total."""
    columns = list(cells)
    rows = []
    for day in day_list:
        counts = [cells[c].get(day, 0) for c in columns]
        rows.append({"day": day.isoformat(), "counts": counts, "total": sum(counts)})
    return columns, rows


def _per_day(found: MatchDays) -> tuple[dict[str, dict[date, int]], dict[str, dict[date, int]]]:
    sources: dict[str, dict[date, int]] = {}
    for s in found.sources:
        series = sources.setdefault(_series_name(s.source, s.mode), {})
        series[s.day] = series.get(s.day, 0) + s.messages
    actions: dict[str, dict[date, int]] = {}
    for a in found.actions:
        series = actions.setdefault(_series_name(a.action, a.mode), {})
        series[a.day] = series.get(a.day, 0) + a.messages
    return dict(sorted(sources.items())), dict(sorted(actions.items()))


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    def reports(request: Request) -> Response:
        since = (request.query_params.get("since") or "").strip() or DEFAULT_SINCE
        now = ctx.now()
        try:
            start = since_moment(since, now)
        except SourceError as exc:
            return render(
                request, "reports.html", 400, title="Reports", since=since, error=str(exc)
            )
        found = match_days(ctx.store.engine, start)
        hits = ctx.policy.hits(None, start, DEFAULT_TOP)
        day_list = days(now, start, found)
        labels = [d.isoformat() for d in day_list]
        by_source, by_action = _per_day(found)
        source_cols, source_rows = _table(day_list, by_source)
        action_cols, action_rows = _table(day_list, by_action)
        top_rows = [
            (f"{t.kind} {t.value}", {_series_name(t.source, t.mode): t.hits}) for t in hits.top
        ]
        named = {*by_source, *(_series_name(t.source, t.mode) for t in hits.top)}
        by_name = colours_for(sorted(named))  # a source has one colour on every chart
        held = {name: ctx.store.count_observables(source=name) for name in ctx.store.source_names()}
        kinds = sorted({k for counts in held.values() for k in counts})
        held_rows = [
            (name, {k: counts.get(k, 0) for k in kinds}) for name, counts in sorted(held.items())
        ]
        return render(
            request,
            "reports.html",
            title="Reports",
            since=since,
            error=None,
            now=now,
            sources_chart=stacked(
                "Messages matched per source per day",
                labels,
                {name: [series.get(d, 0) for d in day_list] for name, series in by_source.items()},
                colours=by_name,
            ),
            source_cols=source_cols,
            source_rows=source_rows,
            actions_chart=stacked(
                "Messages per action per day",
                labels,
                {name: [series.get(d, 0) for d in day_list] for name, series in by_action.items()},
            ),
            action_cols=action_cols,
            action_rows=action_rows,
            hits=hits,
            top_chart=hbars("Observables matched most", top_rows, colours=by_name),
            held_chart=hbars("Observables held per source and kind", held_rows),
            kinds=kinds,
            held_rows=held_rows,
        )

    return [page_route(PATH, reports)]


PAGE: Final = Page(NavItem("Reports", PATH), routes)
