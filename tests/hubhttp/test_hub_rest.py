"""The hub's OTX REST API at /api/v1, with AlienVault's own SDK (OTXv2) as an OTX user runs it,
and with httpx for the exact wire shapes (paging links, timestamps, error bodies)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_fixture import PER_PULSE, PULSES, Hub

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.hub.app import create_app
from feedgate.hub.model import Pulse, pulse_to_otx, utcnow
from feedgate.hub.seed import seed
from feedgate.hub.store import HubStore
from feedgate.taxii.client import TaxiiClient

OTXv2 = pytest.importorskip("OTXv2")
IndicatorTypes = pytest.importorskip("IndicatorTypes")

OTX_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A fresh seeded hub for this module (the tests here create and edit pulses)."""
    path = Path(tmp_path_factory.mktemp("hubrest")) / "hub.db"
    store = HubStore(db.engine(str(path)))
    seed(store, pulses=PULSES, indicators_per_pulse=PER_PULSE, seed=7, until=datetime(2026, 11, 1))
    _, key = store.create_user("alice")
    assert key is not None
    with serving(create_app(store, page_size=5)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield Hub(url, host, int(port), store, key)


def sdk(hub: Hub, key: str | None = None) -> Any:
    return OTXv2.OTXv2(key or hub.api_key, server=hub.url)


def api(hub: Hub, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=hub.url, headers={"X-OTX-API-KEY": key or hub.api_key})


def seeded(hub: Hub) -> list[Pulse]:
    """The default author's pulses alice may see (public ones), newest first."""
    entries = hub.store.pulses_page(hub.author, limit=1000)
    pulses = [e.pulse for e in entries if e.pulse.public]
    return sorted(pulses, key=lambda p: (p.modified, p.id), reverse=True)


def user(hub: Hub, name: str, *subscribe: str) -> str:
    _, key = hub.store.create_user(name, subscribe=subscribe)
    assert key is not None
    return key


# --- reading ------------------------------------------------------------------------------


def test_getall_pages_through_next(hub: Hub) -> None:
    got = sdk(hub).getall(limit=3)
    want = seeded(hub)
    assert len(want) >= 4  # more than one page of 3
    assert [p["id"] for p in got] == [p.id for p in want]
    assert got[0] == pulse_to_otx(want[0])
    assert got[0]["author_name"] == hub.author and "tlp" in got[0]


def test_getall_author_and_modified_since(hub: Hub) -> None:
    want = seeded(hub)
    otx = sdk(hub)
    assert otx.getall(author_name="nobody") == []
    since = want[2].modified
    got = otx.getall(modified_since=since, limit=2)  # naive datetime, sent as ISO
    assert [p["id"] for p in got] == [p.id for p in want[:2]]


def test_paging_fields_and_timestamps(hub: Hub) -> None:
    total = len(seeded(hub))
    with api(hub) as http:
        first = http.get("/api/v1/pulses/subscribed", params={"limit": 5}).json()
        assert first["count"] == total and first["previous"] is None
        assert first["next"].startswith(hub.url + "/api/v1/pulses/subscribed?")
        assert "page=2" in first["next"] and "limit=5" in first["next"]
        second = http.get(first["next"]).json()
        assert second["previous"].startswith(hub.url + "/api/v1/pulses/subscribed?")
        assert "page=" not in second["previous"]
        pages = [first, second]
        while pages[-1]["next"]:
            pages.append(http.get(pages[-1]["next"]).json())
        assert sum(len(p["results"]) for p in pages) == total
        past = http.get("/api/v1/pulses/subscribed", params={"limit": 5, "page": 99})
        assert past.status_code == 404 and past.json() == {"detail": "Invalid page."}
    pulse = first["results"][0]
    assert OTX_TIME.match(pulse["created"]) and OTX_TIME.match(pulse["modified"])
    for ind in pulse["indicators"]:
        assert OTX_TIME.match(ind["created"])
        assert ind["expiration"] is None or OTX_TIME.match(ind["expiration"])


def test_pulse_details_and_indicators(hub: Hub) -> None:
    pulse = seeded(hub)[0]
    otx = sdk(hub)
    detail = otx.get_pulse_details(pulse.id)
    assert detail == pulse_to_otx(pulse, detail=True)
    assert detail["TLP"] == pulse.tlp and "tlp" not in detail
    usable = otx.get_pulse_indicators(pulse.id)
    assert [i["id"] for i in usable] == [i.id for i in pulse.usable_indicators()]
    every = otx.get_pulse_indicators(pulse.id, include_inactive=True, limit=2)  # pages of 2
    assert [i["id"] for i in every] == [i.id for i in pulse.indicators]


def test_search_pulses(hub: Hub) -> None:
    pulse = seeded(hub)[0]
    word = max(pulse.name.split(), key=len)
    found = sdk(hub).search_pulses(word)
    assert pulse.id in [p["id"] for p in found["results"]]
    assert found["count"] >= 1 and "indicators" not in found["results"][0]
    assert sdk(hub).search_pulses("no-such-words-anywhere-zz")["results"] == []


def _first(hub: Hub, *types: str) -> tuple[Pulse, str]:
    for pulse in seeded(hub):
        for ind in pulse.indicators:
            if ind.type in types:
                return pulse, ind.indicator
    raise AssertionError(f"the seed has no {types}")


@pytest.mark.parametrize(
    ("otx_type", "types"),
    [
        ("IPv4", ("IPv4",)),
        ("DOMAIN", ("domain",)),
        ("FILE_HASH_SHA256", ("FileHash-SHA256",)),
        ("FILE_HASH_MD5", ("FileHash-MD5",)),
        ("URL", ("URL",)),
    ],
)
def test_indicator_details_general(hub: Hub, otx_type: str, types: tuple[str, ...]) -> None:
    pulse, value = _first(hub, *types)
    kind = getattr(IndicatorTypes, otx_type)
    general = sdk(hub).get_indicator_details_by_section(kind, value, "general")
    assert general["indicator"] == value and general["type"] == types[0]
    assert general["validation"] == []  # what the SDK's is_malicious example checks first
    info = general["pulse_info"]
    assert pulse.id in [p["id"] for p in info["pulses"]]
    assert info["count"] == len(info["pulses"])
    assert all(p["name"] and p["author"]["username"] for p in info["pulses"])


def test_indicator_details_full_and_unknown(hub: Hub) -> None:
    _, value = _first(hub, "IPv4")
    full = sdk(hub).get_indicator_details_full(IndicatorTypes.IPv4, value)
    assert set(full) == set(IndicatorTypes.IPv4.sections)
    assert full["passive_dns"]["passive_dns"] == []
    nothing = sdk(hub).get_indicator_details_by_section(IndicatorTypes.DOMAIN, "absent.invalid")
    assert nothing["pulse_info"] == {
        "count": 0,
        "pulses": [],
        "references": [],
        "related": nothing["pulse_info"]["related"],
    }
    with api(hub) as http:
        bad = http.get("/api/v1/indicators/IPv4/999.1.2.3/general")
        assert bad.status_code == 400 and "detail" in bad.json()
        assert http.get("/api/v1/indicators/nope/x/general").json() == {"detail": "Not found."}


def test_users_me(hub: Hub) -> None:
    me = sdk(hub).get_user("me")
    assert me["username"] == "alice" and OTX_TIME.match(me["member_since"])


# --- errors -------------------------------------------------------------------------------


def test_bad_or_missing_key_is_403(hub: Hub) -> None:
    with pytest.raises(OTXv2.InvalidAPIKey):
        sdk(hub, "not-a-key").getall()
    with httpx.Client(base_url=hub.url) as http:
        answer = http.get("/api/v1/pulses/subscribed")
    assert answer.status_code == 403 and set(answer.json()) == {"detail"}
    with api(hub, "secret-wrong-key") as http:
        answer = http.get("/api/v1/users/me")
    assert answer.status_code == 403 and "secret-wrong-key" not in answer.text


def test_the_api_root_says_what_exists_and_which_header_to_send(hub: Hub) -> None:
    """``GET /api/v1/`` was a bare 403 (no key) or 404 (a key): now an index anyone may read."""
    for path in ("/api/v1/", "/api/v1"):
        answer = httpx.get(hub.url + path)  # no key: this is where one learns how to send it
        assert answer.status_code == 200, answer.text
        index = answer.json()
        assert index["authentication"]["header"] == "X-OTX-API-KEY"
        assert index["health"] == f"{hub.url}/healthz"
        assert index["taxii"]["discovery"] == f"{hub.url}/taxii/discovery"
        assert "openapi" not in index  # the hub has none: it says nothing it cannot keep
    links = index["links"]
    assert {"me", "subscribed", "search", "pulse", "create"} <= set(links)
    with api(hub) as http:
        for name, url in links.items():
            assert url.startswith(f"{hub.url}/api/v1/"), name
            if "{" not in url and name != "create":  # templates and POST-only aside
                assert http.get(url).status_code == 200, (name, url)
    health = httpx.get(f"{hub.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    refused = httpx.get(f"{hub.url}/api/v1/pulses/subscribed")
    assert refused.status_code == 403 and "X-OTX-API-KEY" in refused.json()["detail"]


def test_unknown_pulse_is_404(hub: Hub) -> None:
    with pytest.raises(OTXv2.NotFound):
        sdk(hub).get_pulse_details("0" * 24)
    with api(hub) as http:
        for path in ("/api/v1/pulses/" + "0" * 24, "/api/v1/pulses/xyz", "/api/v1/nothing"):
            answer = http.get(path)
            assert answer.status_code == 404 and answer.json() == {"detail": "Not found."}


def test_create_bad_input_is_400_with_field_errors(hub: Hub) -> None:
    otx = sdk(hub)
    good = {"indicator": "192.0.2.10", "type": "IPv4"}
    with pytest.raises(OTXv2.BadRequest) as caught:
        otx.create_pulse(
            name="bad one",
            indicators=[
                good,
                {"indicator": "x", "type": "Foo"},
                {"indicator": "1.2.3", "type": "IPv4"},
            ],
        )
    errors = caught.value.value
    assert errors["indicators"][0] == {}
    assert list(errors["indicators"][1]) == ["type"]
    assert list(errors["indicators"][2]) == ["indicator"]
    with pytest.raises(OTXv2.BadRequest) as caught:
        otx.create_pulse(name="red", TLP="red", public=True)
    assert list(caught.value.value) == ["TLP"]
    with api(hub) as http:
        answer = http.post("/api/v1/pulses/create", json={"name": "", "tags": "x", "TLP": "blue"})
    assert answer.status_code == 400
    assert set(answer.json()) == {"name", "tags", "TLP"}
    assert all(isinstance(v, list) and v for v in answer.json().values())
    assert hub.store.pulses_by_authors(["alice"], viewer="alice").count == 0  # nothing stored


# --- writing ------------------------------------------------------------------------------


def test_create_pulse_then_seen_over_taxii(hub: Hub) -> None:
    otx = sdk(hub)
    created = otx.create_pulse(
        name="Phishing wave",
        description="made with the SDK",
        public=True,
        tlp="green",
        tags=["phishing"],
        references=["https://example.com/report"],
        indicators=[
            {"indicator": "198.51.100.23", "type": "IPv4", "title": "C2"},
            {"indicator": "login-check.example", "type": "domain"},
            {"indicator": "d41d8cd98f00b204e9800998ecf8427e", "type": "FileHash-MD5"},
        ],
    )
    assert created["author_name"] == "alice" and created["TLP"] == "green"
    assert created["revision"] == 1 and re.match(r"^[0-9a-f]{24}$", created["id"])
    assert OTX_TIME.match(created["created"]) and created["created"] == created["modified"]
    assert [i["type"] for i in created["indicators"]] == ["IPv4", "domain", "FileHash-MD5"]
    assert all(isinstance(i["id"], int) for i in created["indicators"])
    ipv4 = created["indicators"][0]
    assert ipv4["expiration"] is not None and created["indicators"][1]["expiration"] is None
    assert otx.get_pulse_details(created["id"]) == created
    assert [p["id"] for p in otx.get_my_pulses()] == [created["id"]]

    found = otx.get_indicator_details_by_section(IndicatorTypes.IPv4, "198.51.100.23")
    assert [p["id"] for p in found["pulse_info"]["pulses"]] == [created["id"]]

    taxii = TaxiiClient(
        host=hub.host,
        port=hub.port,
        discovery_path="/taxii/discovery",
        username=hub.api_key,
        password="x",
    )
    with taxii:
        blocks = list(taxii.poll("user_alice"))
    assert len(blocks) == 1
    assert b"198.51.100.23" in blocks[0].content and b"Phishing wave" in blocks[0].content


def test_edit_pulse_add_and_remove_indicators(hub: Hub) -> None:
    otx = sdk(hub)
    created = otx.create_pulse(
        name="To edit",
        tags=["a", "b"],
        indicators=[{"indicator": "evil.example", "type": "domain"}],
    )
    pid = created["id"]
    edited = otx.edit_pulse(
        pid, {"description": "now described", "tags": {"add": ["c"], "remove": ["a"]}}
    )
    assert edited["description"] == "now described" and edited["tags"] == ["b", "c"]
    assert edited["revision"] == 2 and edited["modified"] > created["modified"]

    added = otx.add_pulse_indicators(pid, [{"indicator": "203.0.113.7", "type": "IPv4"}])
    assert [i["indicator"] for i in added["indicators"]] == ["evil.example", "203.0.113.7"]
    assert added["revision"] == 3

    first_id = added["indicators"][0]["id"]
    removed = otx.remove_pulse_indicators(pid, [first_id])
    assert [i["indicator"] for i in removed["indicators"]] == ["203.0.113.7"]

    updated = otx.add_or_update_pulse_indicators(
        pid,
        [
            {"indicator": "203.0.113.7", "type": "IPv4", "title": "retitled"},
            {"indicator": "https://evil.example/x", "type": "URL"},
        ],
    )
    assert [(i["indicator"], i["title"]) for i in updated["indicators"]] == [
        ("203.0.113.7", "retitled"),
        ("https://evil.example/x", ""),
    ]
    assert otx.get_pulse_details(pid) == updated

    with pytest.raises(OTXv2.BadRequest) as caught:
        otx.add_pulse_indicators(pid, [{"indicator": "203.0.113.7", "type": "IPv4"}])
    assert list(caught.value.value["indicators"]["add"][0]) == ["indicator"]
    with pytest.raises(OTXv2.BadRequest):
        otx.remove_pulse_indicators(pid, [10**9])


def test_private_pulses_and_authorship(hub: Hub) -> None:
    bob = user(hub, "bob", "alice")
    carol = user(hub, "carol", "bob")
    bob_otx = sdk(hub, bob)
    secret = bob_otx.create_pulse(
        name="Bob's secret",
        public=False,
        TLP="amber",
        indicators=[{"indicator": "192.0.2.200", "type": "IPv4"}],
    )
    assert secret["TLP"] == "amber" and secret["public"] == 0
    assert bob_otx.get_pulse_details(secret["id"])["name"] == "Bob's secret"
    carol_otx = sdk(hub, carol)
    with pytest.raises(OTXv2.NotFound):
        carol_otx.get_pulse_details(secret["id"])
    assert secret["id"] not in {p["id"] for p in carol_otx.getall()}
    lookup = carol_otx.get_indicator_details_by_section(IndicatorTypes.IPv4, "192.0.2.200")
    assert lookup["pulse_info"]["count"] == 0

    public = bob_otx.create_pulse(name="Bob's public", indicators=[])
    assert [p["id"] for p in carol_otx.get_user_pulses("bob")] == [public["id"]]
    with pytest.raises(OTXv2.InvalidAPIKey):  # 403: only the author edits
        carol_otx.edit_pulse(public["id"], {"name": "mine now"})
    # bob follows alice: her pulses show up in bob's subscription
    alice_ids = {p["id"] for p in sdk(hub).get_my_pulses()}
    assert alice_ids <= {p["id"] for p in bob_otx.getall(author_name="alice")}


def test_events_since(hub: Hub) -> None:
    erin = user(hub, "erin")
    dave = user(hub, "dave", "erin")
    start = utcnow()  # naive UTC, as OTX and the SDK write times
    pulse = sdk(hub, erin).create_pulse(name="Erin's first")
    sdk(hub, erin).edit_pulse(pulse["id"], {"description": "second revision"})
    events = sdk(hub, dave).getevents_since(start)
    assert [(e["object_type"], e["object_id"], e["action"]) for e in events] == [
        ("pulse", pulse["id"], "subscribe")
    ]
    assert events[0]["pulse_action"] == "updated" and OTX_TIME.match(events[0]["created"])
