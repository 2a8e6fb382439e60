"""The policy's REST API on a real server on 127.0.0.1: /api/v1/rules, /exceptions and /hits,
their answers (400 naming the field, 404, 409), the OpenAPI document and the API root; and the
CLI and the API agreeing on one database (what one writes the other lists identically)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from policy_faces import Cli, add_sources, fill_match_log

from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.store import FeedStore
from feedgate.mail.policy_store import PolicyStore
from feedgate.web.api import OPENAPI, create_api

TOKEN = "policy-test-token-0123456789abcdef0123"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def stores(cli: Cli) -> Iterator[tuple[FeedStore, PolicyStore]]:
    feeds, policy = cli.stores()
    add_sources(feeds, "otx", "partner")
    yield feeds, policy
    feeds.close()


@pytest.fixture
def api(stores: tuple[FeedStore, PolicyStore]) -> Iterator[httpx.Client]:
    feeds = stores[0]
    app = create_api(feeds, ThreatFeedLog(feeds, write_file=False), TOKEN)
    with (
        serving(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
        ) as client,
    ):
        yield client


def names(api: httpx.Client) -> list[tuple[int, str]]:
    return [(r["position"], r["name"]) for r in api.get("/api/v1/rules").json()]


def test_every_policy_path_wants_the_token(api: httpx.Client) -> None:
    for method, path in (
        ("GET", "/api/v1/rules"),
        ("POST", "/api/v1/rules"),
        ("GET", "/api/v1/rules/threat-feeds"),
        ("GET", "/api/v1/exceptions"),
        ("DELETE", "/api/v1/exceptions/x.example"),
        ("GET", "/api/v1/hits"),
    ):
        answer = httpx.request(method, str(api.base_url) + path, trust_env=False)
        assert answer.status_code == 401, (method, path)


def test_rules_crud(api: httpx.Client) -> None:
    assert api.get("/api/v1/rules").json() == [
        {"name": "threat-feeds", "position": 1, "enabled": True, "parts": [], "sources": [],
         "kinds": [], "action": "quarantine", "subject_prefix": None}
    ]  # fmt: skip
    made = api.post(
        "/api/v1/rules",
        json={"name": "reject-phish", "parts": ["URL", "from"], "kinds": "domain,url",
              "sources": ["otx"], "action": "reject", "position": 1},
    )  # fmt: skip
    assert made.status_code == 201
    assert made.json() == {
        "name": "reject-phish", "position": 1, "enabled": True, "parts": ["from", "url"],
        "sources": ["otx"], "kinds": ["domain", "url"], "action": "reject",
        "subject_prefix": None,
    }  # fmt: skip
    api.post("/api/v1/rules", json={"name": "tag", "action": "tag", "enabled": False})
    assert names(api) == [(1, "reject-phish"), (2, "threat-feeds"), (3, "tag")]
    assert api.get("/api/v1/rules/tag").json()["subject_prefix"] == "[THREAT]"

    moved = api.patch("/api/v1/rules/tag", json={"name": "tag2", "position": 1, "enabled": True})
    assert moved.status_code == 200 and moved.json()["name"] == "tag2"
    assert names(api) == [(1, "tag2"), (2, "reject-phish"), (3, "threat-feeds")]
    assert api.get("/api/v1/rules/tag2").json()["enabled"] is True
    back = api.patch("/api/v1/rules/reject-phish", json={"parts": ["any"], "sources": []})
    assert (back.json()["parts"], back.json()["sources"]) == ([], [])
    assert api.get("/api/v1/rules/tag").status_code == 404

    assert api.delete("/api/v1/rules/threat-feeds").status_code == 204
    assert names(api) == [(1, "tag2"), (2, "reject-phish")]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field", "detail"),
    [
        ("POST", "/api/v1/rules", {"name": "x", "action": "burn"}, 400, "action",
         "action: unknown action 'burn': choose from"),
        ("POST", "/api/v1/rules", {"name": "x"}, 400, "action", "action: missing"),
        ("POST", "/api/v1/rules", {"name": "x", "action": "log", "parts": ["body"]}, 400,
         "parts", "parts: unknown part 'body'"),
        ("POST", "/api/v1/rules", {"name": "x", "action": "log", "sources": ["gone"]}, 400,
         "sources", "sources: no source named 'gone': the sources are otx, partner"),
        ("POST", "/api/v1/rules", {"name": "x", "action": "log", "position": "1"}, 400,
         "position", "position: expected a whole number, got '1': give 1 for the first rule"),
        ("POST", "/api/v1/rules", {"name": "x", "action": "log", "position": True}, 400,
         "position", "position: expected a whole number, got true: give 1 for the first rule"),
        ("PATCH", "/api/v1/rules/threat-feeds", {"position": False}, 400, "position",
         "position: expected a whole number, got false"),
        ("PATCH", "/api/v1/rules/threat-feeds", {"enabled": None}, 400, "enabled",
         "enabled: null: give true or false"),
        ("PATCH", "/api/v1/rules/threat-feeds", {"sources": [None]}, 400, "sources",
         "sources: null is not a name: give text"),
        ("PATCH", "/api/v1/rules/threat-feeds", {"name": ["a"]}, 400, "name",
         'name: expected text, got ["a"]'),
        ("PATCH", "/api/v1/rules/threat-feeds", {}, 400, None,
         "nothing to change: give one or more of the rule's fields name, parts, sources,"
         " kinds, action, position, enabled, subject_prefix"),
        ("POST", "/api/v1/exceptions", {"value": True, "note": "n"}, 400, "value",
         "expected text, got true: give a domain"),
        ("POST", "/api/v1/exceptions", {"value": "x.example", "note": 5}, 400, "note",
         "expected text, got 5: give the note"),
        ("POST", "/api/v1/rules", {"name": "x", "action": "log", "colour": 1}, 400, "colour",
         "colour: unknown field: the fields are name, parts"),
        ("POST", "/api/v1/rules", ["x"], 400, "body", "body: expected a JSON object"),
        ("POST", "/api/v1/rules", {"action": "log"}, 400, "name", "name: empty"),
        ("POST", "/api/v1/rules", {"name": "threat-feeds", "action": "log"}, 409, "name",
         "a rule named 'threat-feeds' exists"),
        ("PATCH", "/api/v1/rules/threat-feeds", {"enabled": "no"}, 400, "enabled",
         "enabled: 'no': give true or false"),
        ("PATCH", "/api/v1/rules/threat-feeds", {"colour": 1}, 400, "colour",
         "colour: unknown field"),
        ("PATCH", "/api/v1/rules/nosuch", {"enabled": False}, 404, "name",
         "no rule named 'nosuch': the rules are threat-feeds"),
        ("GET", "/api/v1/rules/nosuch", None, 404, "name", "no rule named 'nosuch'"),
        ("DELETE", "/api/v1/rules/nosuch", None, 404, "name", "no rule named 'nosuch'"),
        ("POST", "/api/v1/exceptions", {"value": "x.example"}, 400, "note",
         "an exception needs a note"),
        ("POST", "/api/v1/exceptions", {"value": "*.x.example", "note": "n"}, 400, "value",
         "'*.x.example': a domain exception covers its subdomains already"),
        ("DELETE", "/api/v1/exceptions/nothere.example", None, 404, "value",
         "nothere.example is not on the exception list; 'feedgate exception list --format"
         " jsonl' shows the values exactly"),
        ("DELETE", "/api/v1/exceptions", None, 400, "value", "value: missing"),
        ("GET", "/api/v1/hits?since=7days", None, 400, "since", "'7days' is not a duration"),
        ("GET", "/api/v1/hits?top=-1", None, 400, "top",
         "top: '-1' cannot be used: give a whole number from 0 to 1000"),
        ("GET", "/api/v1/hits?top=5000", None, 400, "top",
         "top: '5000' cannot be used: give a whole number from 0 to 1000"),
    ],
)  # fmt: skip
def test_refusals(
    api: httpx.Client,
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str | None,
    detail: str,
) -> None:
    answer = api.request(method, path, json=body) if body is not None else api.request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["detail"].startswith(detail), answer.json()["detail"]
    assert names(api) == [(1, "threat-feeds")]


def test_bad_json_is_400(api: httpx.Client) -> None:
    answer = api.post("/api/v1/rules", content=b"{", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["field"] == "body"


def test_exceptions_crud_and_deleting_values_with_slashes(api: httpx.Client) -> None:
    for value in ("Partner.Example", "https://files.example/a/b?c=1", "192.0.2.0/24"):
        assert api.post("/api/v1/exceptions", json={"value": value, "note": "n"}).status_code == 201
    dup = api.post("/api/v1/exceptions", json={"value": "partner.example.", "note": "again"})
    assert dup.status_code == 409 and dup.json()["field"] == "value"
    assert [e["value"] for e in api.get("/api/v1/exceptions").json()] == [
        "192.0.2.0/24",
        "partner.example",
        "https://files.example/a/b?c=1",
    ]
    assert api.delete("/api/v1/exceptions/" + quote("192.0.2.0/24", safe="")).status_code == 204
    url = "https://files.example/a/b?c=1"
    assert api.delete("/api/v1/exceptions", params={"value": url}).status_code == 204
    assert api.delete("/api/v1/exceptions/PARTNER.example").status_code == 204
    assert api.get("/api/v1/exceptions").json() == []


def test_an_email_exception_is_one_entry_whatever_its_case(api: httpx.Client) -> None:
    made = api.post("/api/v1/exceptions", json={"value": "CEO@Example.com", "note": "the CEO"})
    assert made.status_code == 201 and made.json()["value"] == "ceo@example.com"
    again = api.post("/api/v1/exceptions", json={"value": "ceo@example.com", "note": "again"})
    assert again.status_code == 409
    assert api.delete("/api/v1/exceptions/Ceo@EXAMPLE.com").status_code == 204
    assert api.get("/api/v1/exceptions").json() == []


def test_hits(api: httpx.Client, stores: tuple[FeedStore, PolicyStore]) -> None:
    assert api.get("/api/v1/hits").json() == {"sources": [], "top": []}
    fill_match_log(stores[1], datetime.now(UTC))
    week = api.get("/api/v1/hits").json()  # since=7d by default
    assert [(s["source"], s["hits"], s["messages"]) for s in week["sources"]] == [
        ("otx", 3, 2),
        ("partner", 1, 1),
    ]
    assert api.get("/api/v1/hits?since=all").json()["sources"][0]["hits"] == 4
    one = api.get("/api/v1/hits", params={"source": "partner", "top": "1"}).json()
    assert [t["value"] for t in one["top"]] == ["198.51.100.7"]
    assert api.get("/api/v1/hits", params={"top": "1000"}).status_code == 200
    assert api.get("/api/v1/hits", params={"top": "0"}).json()["top"] == []


def test_the_index_and_openapi_document_name_the_policy_paths(api: httpx.Client) -> None:
    index = httpx.get(str(api.base_url) + "/api/v1/", trust_env=False).json()
    assert {"rules", "exceptions", "hits"} <= set(index["links"])
    spec = api.get("/api/v1/openapi.json").json()
    assert spec == json.loads(json.dumps(OPENAPI))
    for path in ("/api/v1/rules", "/api/v1/rules/{name}", "/api/v1/exceptions",
                 "/api/v1/exceptions/{value}", "/api/v1/hits"):  # fmt: skip
        assert path in spec["paths"]
    schemas = spec["components"]["schemas"]
    rule = api.get("/api/v1/rules/threat-feeds").json()
    assert set(rule) == set(schemas["Rule"]["properties"]) == set(schemas["Rule"]["required"])
    assert schemas["Rule"]["example"] == rule
    assert set(schemas["NewRule"]["properties"]) == set(rule)
    post = spec["paths"]["/api/v1/rules"]["post"]
    assert {"201", "400", "401", "409", "413"} <= set(post["responses"])
    assert set(spec["paths"]["/api/v1/rules/{name}"]) == {"parameters", "get", "patch", "delete"}
    hits = {p["name"] for p in spec["paths"]["/api/v1/hits"]["get"]["parameters"]}
    assert hits == {"source", "since", "top", "mode"}
    answer = api.get("/api/v1/hits").json()
    assert set(answer) == set(schemas["Hits"]["properties"])


def test_the_cli_and_the_api_agree(cli: Cli, api: httpx.Client, stores: Any) -> None:
    """A rule or exception written by one face is listed identically by the other; the hits
    are the same numbers."""
    cli.ok("rule", "add", "from-cli", "--part", "url", "--source", "otx", "--kind", "url",
           "--action", "tag", "--subject-prefix", "[CLI]", "--position", "1")  # fmt: skip
    new = {"name": "from-api", "parts": ["client-ip"], "sources": ["partner"], "action": "reject"}
    assert api.post("/api/v1/rules", json={**new, "enabled": False}).status_code == 201
    api.patch("/api/v1/rules/from-cli", json={"position": 2})
    assert cli.jsonl("rule", "list") == api.get("/api/v1/rules").json()
    assert [r["name"] for r in api.get("/api/v1/rules").json()] == [
        "threat-feeds",
        "from-cli",
        "from-api",
    ]
    shown = cli.ok("rule", "show", "from-api")
    assert "enabled:        no" in shown and "action:         reject" in shown

    cli.ok("exception", "add", "CEO@Example.com", "--note", "from the CLI")
    api.post("/api/v1/exceptions", json={"value": "https://a.example/x/y", "note": "api"})
    assert cli.jsonl("exception", "list") == api.get("/api/v1/exceptions").json()
    cli.ok("exception", "delete", "https://a.example/x/y")
    assert api.delete("/api/v1/exceptions/CEO@example.com").status_code == 204
    assert cli.jsonl("exception", "list") == api.get("/api/v1/exceptions").json() == []

    fill_match_log(stores[1], datetime.now(UTC))
    for query, args in (("", ()), ("?since=all", ("--since", "all")),
                        ("?source=otx&top=1&since=12h", ("--source", "otx", "--top", "1",
                                                         "--since", "12h"))):  # fmt: skip
        from_api = api.get("/api/v1/hits" + query).json()
        from_cli = json.loads(cli.ok("hits", *args, "--format", "json"))
        assert from_cli == from_api
        assert from_api["sources"]
