"""The Reports page (``/reports``): charts an admin would rather look at than read, each also
as a table: messages matched per source per day, messages per action per day, the observables
matched most, and the observables held per source and kind.

The numbers come from the calls the REST API and the CLI use: the per-source totals and the top
observables are :meth:`~feedgate.mail.policy_store.PolicyStore.hits` (``GET /api/v1/hits``,
``feedgate hits``) over the window :func:`~feedgate.web.api_policy.since_moment` reads (default
:data:`~feedgate.web.api_policy.DEFAULT_SINCE`, as the API's); the days are
:func:`feedgate.mail.match_days.match_days` over the same rows and window; the observables held
are :meth:`~feedgate.feeds.store.FeedStore.count_observables` (``GET /api/v1/sources`` counts)
now, and over time :meth:`~feedgate.feeds.store.FeedStore.held_history`, the counts every poll
writes at its end (:mod:`feedgate.feeds.held`): per day the day's last count, summed over
kinds, per source. Days run to the console's clock (``ConsoleContext.now``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from feedgate.feeds.held import KEEP, HeldCount
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


def _held_days(
    now: datetime, since: datetime | None, history: Sequence[HeldCount]
) -> tuple[list[date], dict[str, dict[date, dict[str, int]]]]:
    """The UTC days of the held-over-time chart (from ``since``'s, None: the first day with a
    count, to ``now``'s) and, per source and day, the day's last counts by kind."""
    last = now.astimezone(UTC).date()
    per: dict[str, dict[date, tuple[datetime, dict[str, int]]]] = {}
    for h in history:  # in time order per source
        day = h.at.astimezone(UTC).date()
        days_of = per.setdefault(h.source, {})
        at, counts = days_of.get(day, (h.at, {}))
        if h.at > at:  # a later snapshot that day: it is the day's count
            at, counts = h.at, {}
        counts[h.kind] = h.held
        days_of[day] = (at, counts)
    seen = [d for days_of in per.values() for d in days_of]
    first = since.astimezone(UTC).date() if since is not None else min(seen, default=last)
    first = min(first, last)
    day_list = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return day_list, {
        name: {d: counts for d, (_at, counts) in days_of.items() if first <= d <= last}
        for name, days_of in sorted(per.items())
    }


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
        held_day_list, held_per_day = _held_days(now, start, ctx.store.held_history(start))
        held_kinds = sorted({k for ds in held_per_day.values() for c in ds.values() for k in c})
        held_over_time_rows = [
            {"day": d.isoformat(), "source": name, "counts": [c.get(k, 0) for k in held_kinds]}
            for d in held_day_list
            for name, ds in held_per_day.items()
            if (c := ds.get(d)) is not None
        ]
        named = {*by_source, *held_per_day, *(_series_name(t.source, t.mode) for t in hits.top)}
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
            held_over_time_chart=stacked(
                "Observables held per source over time",
                [d.isoformat() for d in held_day_list],
                {
                    name: [sum(ds.get(d, {}).values()) for d in held_day_list]
                    for name, ds in held_per_day.items()
                },
                colours=by_name,
            ),
            held_kinds=held_kinds,
            held_over_time_rows=held_over_time_rows,
            held_keep_days=KEEP.days,
        )

    return [page_route(PATH, reports)]


PAGE: Final = Page(NavItem("Reports", PATH), routes)
