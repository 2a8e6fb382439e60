"""The Mail policy page (``/policy``): the rules in order (move up and down, enable and
disable, edit, add, delete after a confirmation), the exception list (add with a note,
delete), and the false-positive gate of each source.

One rule, one place: every change goes through the methods the REST API calls
(:class:`~feedgate.mail.policy_store.PolicyStore`'s ``add_rule``, ``edit_rule``,
``delete_rule``, ``add_exception``, ``delete_exception``, as ``/api/v1/rules`` and
``/api/v1/exceptions`` do) and the gate through :func:`feedgate.web.api.change_source` (as
``PATCH /api/v1/sources/{name}`` with ``fp_gate``). A refusal is the store's
:class:`~feedgate.mail.rules.PolicyError`, whose ``field`` says which field of the form it is
shown beside (the field the API's 400 names).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from feedgate.mail.model import PARTS
from feedgate.mail.rules import KINDS, RULE_ACTIONS, PolicyError, PolicyNotFound, Rule
from feedgate.web.api import change_source

from .auth import form, page_route
from .context import ConsoleContext, NavItem, Page
from .render import NO_STORE, flash, render

__all__ = ["PAGE", "PATH", "routes"]

PATH: Final = "/policy"
TITLE: Final = "Mail policy"
#: The fields of the rule form (the API's rule fields a form can set).
_RULE_FORM: Final = ("name", "action", "parts", "sources", "kinds", "subject_prefix")


def _rule_values(data: FormData) -> dict[str, Any]:
    """The rule form as the store takes it: lists from the checkboxes, empty text as None."""
    return {
        "name": (str(data.get("name") or "").strip() or None),
        "action": str(data.get("action") or ""),
        "parts": [str(v) for v in data.getlist("parts")],
        "sources": [str(v) for v in data.getlist("sources")],
        "kinds": [str(v) for v in data.getlist("kinds")],
        "subject_prefix": (str(data.get("subject_prefix") or "").strip() or None),
    }


def _shown(rule: Rule) -> dict[str, Any]:
    return {**rule.to_dict(), "q": quote(rule.name, safe="")}


def _back(request: Request, text: str, level: str = "ok", anchor: str = "") -> Response:
    return flash(request, RedirectResponse(PATH + anchor, 303, headers=NO_STORE), text, level)


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    policy, store = ctx.policy, ctx.store

    def choices(rule: dict[str, Any] | None = None) -> dict[str, Any]:
        named = list(rule["sources"]) if rule else []
        return {
            "actions": [str(a) for a in RULE_ACTIONS],
            "parts": [str(p) for p in PARTS],
            "kinds": list(KINDS),
            # a rule may name a source deleted since: it stays on its form
            "sources": [
                *store.source_names(),
                *(s for s in named if s not in store.source_names()),
            ],
        }

    def page(
        request: Request,
        status: int = 200,
        rule_errors: dict[str, str] | None = None,
        rule_form: dict[str, Any] | None = None,
        exception_errors: dict[str, str] | None = None,
        exception_form: dict[str, str] | None = None,
    ) -> Response:
        rules = [_shown(r) for r in policy.list_rules()]
        blank = {"name": "", "action": "quarantine", "parts": [], "sources": [], "kinds": []}
        return render(
            request,
            "policy.html",
            status,
            title=TITLE,
            rules=rules,
            exceptions=[e.to_dict() for e in policy.list_exceptions()],
            gates=[
                {"name": s.name, "on": s.fp_gate, "q": quote(s.name, safe="")}
                for s in store.list_sources()
            ],
            rule_form={"subject_prefix": "", **blank, **(rule_form or {})},
            rule_errors=rule_errors or {},
            exception_form=exception_form or {"value": "", "note": ""},
            exception_errors=exception_errors or {},
            **choices(),
        )

    def policy_page(request: Request) -> Response:
        return page(request)

    def add_rule(request: Request) -> Response:
        values = _rule_values(form(request))
        try:
            rule = policy.add_rule(values.pop("name"), **values)
        except PolicyError as exc:
            shown = {**_rule_values(form(request)), "name": str(form(request).get("name") or "")}
            shown["subject_prefix"] = shown["subject_prefix"] or ""
            return page(
                request, 400, rule_errors={exc.field or "form": exc.message}, rule_form=shown
            )
        return _back(request, f"Rule {rule.name} added at position {rule.position}.")

    def missing(request: Request, name: str) -> Response:
        return render(
            request,
            "error.html",
            404,
            title="No such rule",
            message=f"There is no rule named {name!r} (it may have been deleted meanwhile).",
            back=PATH,
        )

    def get(name: str) -> Rule | None:
        try:
            return policy.get_rule(name)
        except PolicyNotFound:
            return None

    def edit_form(request: Request) -> Response:
        name = request.path_params["name"]
        rule = get(name)
        if rule is None:
            return missing(request, name)
        shown = _shown(rule)
        shown["subject_prefix"] = shown["subject_prefix"] or ""
        return render(
            request,
            "policy_rule.html",
            title=f"Edit rule {name}",
            rule=shown,
            errors={},
            **choices(shown),
        )

    def edit(request: Request) -> Response:
        name = request.path_params["name"]
        old = get(name)
        if old is None:
            return missing(request, name)
        values = _rule_values(form(request))
        values["name"] = values["name"] or name
        if tuple(values["sources"]) == old.sources:
            del values["sources"]  # unchanged: a source deleted since may stay named
        if values["action"] != "tag":
            values["subject_prefix"] = None
        try:
            rule = policy.edit_rule(name, **values)
        except PolicyError as exc:
            shown = {**_shown(old), **_rule_values(form(request))}
            shown["name"] = str(form(request).get("name") or "")
            shown["subject_prefix"] = shown["subject_prefix"] or ""
            return render(
                request,
                "policy_rule.html",
                400,
                title=f"Edit rule {name}",
                rule={**shown, "q": quote(name, safe="")},
                errors={exc.field or "form": exc.message},
                **choices(shown),
            )
        return _back(request, f"Rule {rule.name} saved.")

    def move(request: Request) -> Response:
        name = request.path_params["name"]
        rule = get(name)
        if rule is None:
            return missing(request, name)
        step = -1 if form(request).get("direction") == "up" else 1
        count = len(policy.list_rules())
        target = min(max(1, rule.position + step), count)
        if target != rule.position:
            policy.edit_rule(name, position=target)
        return _back(request, f"Rule {name} is at position {target}.", anchor="#rules")

    def switch(request: Request) -> Response:
        name = request.path_params["name"]
        rule = get(name)
        if rule is None:
            return missing(request, name)
        enabled = form(request).get("enabled") == "1"
        policy.set_enabled(name, enabled)
        state = "enabled" if enabled else "disabled: it matches nothing until enabled again"
        return _back(request, f"Rule {name} {state}.")

    def confirm_delete(request: Request) -> Response:
        name = request.path_params["name"]
        rule = get(name)
        if rule is None:
            return missing(request, name)
        return render(
            request, "policy_rule_delete.html", title=f"Delete rule {name}", rule=_shown(rule)
        )

    def delete(request: Request) -> Response:
        name = request.path_params["name"]
        if get(name) is None:
            return missing(request, name)
        policy.delete_rule(name)
        return _back(request, f"Rule {name} deleted (the rules after it moved up).")

    def add_exception(request: Request) -> Response:
        data = form(request)
        value, note = str(data.get("value") or ""), str(data.get("note") or "")
        try:
            entry = policy.add_exception(value, note)
        except PolicyError as exc:
            return page(
                request,
                400,
                exception_errors={exc.field or "value": exc.message},
                exception_form={"value": value, "note": note},
            )
        return _back(
            request, f"{entry.value} ({entry.kind}) is on the exception list.", anchor="#exceptions"
        )

    def delete_exception(request: Request) -> Response:
        value = str(form(request).get("value") or "")
        try:
            policy.delete_exception(value)
        except PolicyError as exc:
            return _back(request, exc.message, "error", anchor="#exceptions")
        return _back(request, f"{value} is off the exception list.", anchor="#exceptions")

    def gate(request: Request) -> Response:
        name = request.path_params["name"]
        found = store.get_source(name)
        if found is None:
            return _back(request, f"There is no source named {name!r}.", "error", anchor="#gates")
        on = form(request).get("fp_gate") == "on"
        if found.fp_gate != on:
            change_source(store, found, {"fp_gate": on})
        text = (
            f"False-positive gate on for {name}: its observables that would block the world"
            " not enforced."
            if on
            else f"False-positive gate off for {name}: every observable of it is enforced."
        )
        return _back(request, text, anchor="#gates")

    return [
        page_route(PATH, policy_page),
        page_route(PATH + "/rules", add_rule, methods=("POST",)),
        page_route(PATH + "/rules/{name}/edit", edit_form),
        page_route(PATH + "/rules/{name}/edit", edit, methods=("POST",)),
        page_route(PATH + "/rules/{name}/move", move, methods=("POST",)),
        page_route(PATH + "/rules/{name}/enabled", switch, methods=("POST",)),
        page_route(PATH + "/rules/{name}/delete", confirm_delete),
        page_route(PATH + "/rules/{name}/delete", delete, methods=("POST",)),
        page_route(PATH + "/exceptions", add_exception, methods=("POST",)),
        page_route(PATH + "/exceptions/delete", delete_exception, methods=("POST",)),
        page_route(PATH + "/sources/{name}/fp-gate", gate, methods=("POST",)),
    ]


PAGE: Final = Page(NavItem("Policy", PATH), routes)
