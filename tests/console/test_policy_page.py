"""The Mail policy page in a real browser: a rule and an exception added there are what
GET /api/v1/rules and /exceptions answer, rules move up and down, a bad rule's error is shown
beside its field, a rule is deleted after a confirmation, the false-positive gate switches."""

from __future__ import annotations

import contextlib
import uuid

import httpx
from console_helpers import API_TOKEN, Console

with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def api(console: Console, path: str) -> list[dict[str, object]]:
    answer = httpx.get(console.url + path, headers=AUTH)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, object]] = answer.json()
    return rows


def rule_names(console: Console) -> list[object]:
    return [r["name"] for r in api(console, "/api/v1/rules")]


def add_rule(page: Page, name: str, action: str, *, kinds: tuple[str, ...] = ()) -> None:
    form = page.locator("form.rule-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Action").select_option(action)
    for kind in kinds:
        form.locator("#rule-kinds").get_by_label(kind, exact=True).check()
    form.get_by_role("button", name="Add rule").click()


def test_add_reorder_disable_and_delete_rules(console: Console, logged_in: Page) -> None:
    source = console.add_source("pol").name
    first, second = f"r1-{uuid.uuid4().hex[:6]}", f"r2-{uuid.uuid4().hex[:6]}"
    logged_in.goto(console.url + "/policy")
    add_rule(logged_in, first, "reject", kinds=("domain", "url"))
    expect(logged_in.locator(".flash.ok")).to_contain_text(f"Rule {first} added")
    form = logged_in.locator("form.rule-form")
    form.get_by_label("Name").fill(second)
    form.get_by_label("Action").select_option("tag")
    form.get_by_label("Subject prefix (tag rules)").fill("[SPAM?]")
    form.locator("#rule-sources").get_by_label(source).check()
    form.get_by_role("button", name="Add rule").click()
    expect(logged_in.locator(f'tr[data-rule="{second}"]')).to_be_visible()
    rules = {r["name"]: r for r in api(console, "/api/v1/rules")}
    assert rules[first]["action"] == "reject" and rules[first]["kinds"] == ["domain", "url"]
    assert rules[second]["sources"] == [source] and rules[second]["subject_prefix"] == "[SPAM?]"
    names = rule_names(console)
    assert names.index(second) == names.index(first) + 1
    # Up moves the second above the first, as the API then lists them
    logged_in.get_by_role("button", name=f"Move {second} up").click()
    expect(logged_in.locator(".flash.ok")).to_contain_text(f"Rule {second} is at position")
    names = rule_names(console)
    assert names.index(second) == names.index(first) - 1
    order = logged_in.locator("table.rules tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.rule)"
    )
    assert order == names
    logged_in.get_by_role("button", name=f"Move {second} down").click()
    expect(logged_in.locator(".flash.ok")).to_be_visible()
    names = rule_names(console)
    assert names.index(second) == names.index(first) + 1
    # disable, then edit the action
    row = logged_in.locator(f'tr[data-rule="{first}"]')
    row.get_by_role("button", name="Disable").click()
    expect(row.locator("td.enabled")).to_have_text("no")
    row.get_by_role("link", name="Edit").click()
    logged_in.get_by_label("Action").select_option("quarantine")
    logged_in.get_by_role("button", name="Save").click()
    expect(row.locator("td.action")).to_have_text("quarantine")
    edited = httpx.get(f"{console.url}/api/v1/rules/{first}", headers=AUTH).json()
    assert edited["enabled"] is False and edited["action"] == "quarantine"
    assert edited["kinds"] == ["domain", "url"]
    # delete after the confirmation page
    row.get_by_role("link", name="Delete").click()
    expect(logged_in.get_by_role("heading", level=1)).to_have_text(f"Delete rule {first}")
    assert first in rule_names(console)  # the GET changed nothing
    logged_in.get_by_role("button", name="Delete rule").click()
    expect(logged_in.locator(".flash.ok")).to_contain_text(f"Rule {first} deleted")
    assert first not in rule_names(console)


def test_a_bad_rule_is_refused_beside_its_field(console: Console, logged_in: Page) -> None:
    before = rule_names(console)
    logged_in.goto(console.url + "/policy")
    add_rule(logged_in, "no spaces allowed!", "reject")
    error = logged_in.locator("#rule-name-error")
    expect(error).to_be_visible()
    refusal = httpx.post(
        console.url + "/api/v1/rules",
        json={"name": "no spaces allowed!", "action": "reject"},
        headers=AUTH,
    ).json()
    assert refusal["field"] == "name"
    expect(error).to_have_text(refusal["detail"])
    expect(logged_in.get_by_label("Name")).to_have_value("no spaces allowed!")
    assert rule_names(console) == before


def test_exceptions_and_the_fp_gate(console: Console, logged_in: Page) -> None:
    source = console.add_source("gate").name
    domain = f"partner-{uuid.uuid4().hex[:6]}.example"
    logged_in.goto(console.url + "/policy")
    logged_in.get_by_label("Value").fill(domain)
    logged_in.get_by_label("Note").fill("our partner's mail")
    logged_in.get_by_role("button", name="Add exception").click()
    expect(logged_in.locator(f'tr[data-value="{domain}"] td.note')).to_have_text(
        "our partner's mail"
    )
    listed = {e["value"]: e for e in api(console, "/api/v1/exceptions")}
    assert listed[domain] == {"kind": "domain", "value": domain, "note": "our partner's mail"}
    # a value that is no kind: the store's message beside the field
    logged_in.get_by_label("Value").fill("not a value at all")
    logged_in.get_by_role("button", name="Add exception").click()
    expect(logged_in.locator("#exception-value-error")).to_be_visible()
    logged_in.locator(f'tr[data-value="{domain}"]').get_by_role("button", name="Delete").click()
    expect(logged_in.locator(f'tr[data-value="{domain}"]')).to_have_count(0)
    assert domain not in {e["value"] for e in api(console, "/api/v1/exceptions")}
    # the gate, as PATCH /api/v1/sources/{name} fp_gate sets it
    gate = logged_in.locator(f'#gates tr[data-source="{source}"]')
    expect(gate.locator("td.gate")).to_have_text("on")
    gate.get_by_role("button", name="Turn off").click()
    expect(gate.locator("td.gate")).to_have_text("off")
    shown = httpx.get(f"{console.url}/api/v1/sources/{source}", headers=AUTH).json()
    assert shown["fp_gate"] is False
