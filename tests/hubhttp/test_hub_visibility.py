"""One visibility rule on every face of the hub: a user sees over TAXII exactly the pulses the
REST API shows them (public ones, and their own private ones), with AlienVault's SDK (OTXv2) on
the REST side and our TAXII client on the other; the rendered-package cache and multi-part
result ids leak nothing across users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.hub.app import create_app
from feedgate.hub.feed import StoreFeed
from feedgate.hub.seed import generate, seed
from feedgate.hub.store import HubStore
from feedgate.taxii import messages as tm
from feedgate.taxii.client import TaxiiClient

OTXv2 = pytest.importorskip("OTXv2")

UNTIL = datetime(2026, 11, 1)
_PULSE_URL = re.compile(rb"https://otx\.alienvault\.com/pulse/([0-9a-f]{24})")


@dataclass
class World:
    url: str
    port: int
    store: HubStore
    keys: dict[str, str]  # user -> API key


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """AlienVault's seeded pulses (some private), bob's pulses (some private); alice follows
    both, AlienVault follows bob; all three have keys. Pages of 3: polls run over many parts."""
    path = Path(tmp_path_factory.mktemp("visibility")) / "hub.db"
    store = HubStore(db.engine(str(path)))
    seed(store, pulses=16, indicators_per_pulse=3, seed=7, until=UNTIL)
    bobs = list(generate(7, 3, author="bob", seed=3, until=UNTIL))
    store.add_pulses([replace(p, public=n % 2 == 0) for n, p in enumerate(bobs)])
    keys = {}
    for name, follows in (("alice", ["bob"]), ("bob", []), ("AlienVault", ["bob"])):
        _, key = store.create_user(name, subscribe=follows)
        assert key is not None
        keys[name] = key
    with serving(create_app(store, page_size=3)) as url:
        yield World(url, int(url.rsplit(":", 1)[1]), store, keys)


def expected(world: World, author: str, viewer: str) -> set[str]:
    """What ``viewer`` may see of ``author``'s pulses, straight from the data: the rule written
    out once more by hand, not through the store's predicate."""
    every = world.store.pulses_page(author, limit=1000)
    return {e.pulse.id for e in every if e.pulse.public or e.pulse.author_name == viewer}


def taxii(world: World, user: str) -> TaxiiClient:
    return TaxiiClient(
        host="127.0.0.1",
        port=world.port,
        discovery_path="/taxii/discovery",
        username=world.keys[user],
        password="x",
    )


def polled(world: World, user: str, author: str) -> list[str]:
    with taxii(world, user) as client:
        blocks = list(client.poll(f"user_{author}"))
    found = [_PULSE_URL.search(b.content) for b in blocks]
    assert all(found)
    return [m.group(1).decode() for m in found if m]


def test_the_data_has_private_pulses_of_both_authors(world: World) -> None:
    for author in ("AlienVault", "bob"):
        every = world.store.pulses_page(author, limit=1000)
        assert any(not e.pulse.public for e in every), author
        assert any(e.pulse.public for e in every), author


@pytest.mark.parametrize("viewer", ["alice", "bob", "AlienVault"])
@pytest.mark.parametrize("author", ["AlienVault", "bob"])
def test_taxii_and_the_rest_api_show_a_user_the_same_pulses(
    world: World, viewer: str, author: str
) -> None:
    want = expected(world, author, viewer)
    otx: Any = OTXv2.OTXv2(world.keys[viewer], server=world.url)
    rest = [p["id"] for p in otx.get_user_pulses(author, max_items=1000)]
    if viewer == "alice":  # she follows both: her subscribed feed names the same pulses
        assert sorted(p["id"] for p in otx.getall(author_name=author, limit=4)) == sorted(rest)
    over_taxii = polled(world, viewer, author)
    assert sorted(rest) == sorted(want)
    assert sorted(over_taxii) == sorted(want)  # no duplicates, none missing across the parts
    with taxii(world, viewer) as client:
        count = client.get_content_count(f"user_{author}")
    assert count is not None and count.count == len(want)


def test_a_private_package_rendered_for_its_author_is_not_served_to_others(world: World) -> None:
    private = {e.pulse.id for e in world.store.pulses_page("bob", limit=100) if not e.pulse.public}
    assert private <= set(polled(world, "bob", "bob"))  # rendered now, and cached
    assert private <= set(world.store.rendered_packages(sorted(private)))
    assert not private & set(polled(world, "alice", "bob"))


def test_another_users_result_id_is_refused(world: World) -> None:
    request = tm.PollRequest(
        message_id="1", collection_name="user_bob", poll_parameters=tm.PollParameters()
    )
    post = f"{world.url}/taxii/poll"
    first = tm.parse(
        httpx.post(post, content=request.to_xml(), auth=(world.keys["bob"], "x")).content
    )
    assert isinstance(first, tm.PollResponse) and first.more and first.result_id
    fulfil = tm.PollFulfillment(
        message_id="2", collection_name="user_bob", result_id=first.result_id, result_part_number=2
    )
    answer = tm.parse(
        httpx.post(post, content=fulfil.to_xml(), auth=(world.keys["alice"], "x")).content
    )
    assert isinstance(answer, tm.StatusMessage) and answer.status_type == tm.ST_NOT_FOUND


@pytest.mark.parametrize("viewer", ["alice", "bob"])
def test_part_positions_count_only_what_the_viewer_sees(world: World, viewer: str) -> None:
    """Where a part starts when it is not cached (another worker's part): the label at each
    offset of the viewer's own sequence, so parts neither skip nor repeat pulses."""
    feed = StoreFeed(world.store)
    end, snapshot = datetime.now(UTC), feed.snapshot()
    entries = feed.page("bob", viewer, None, end, snapshot, None, 1000)
    assert feed.count("bob", viewer, None, end, snapshot) == len(entries)
    labels = [feed.label_at("bob", viewer, None, end, snapshot, n) for n in range(len(entries))]
    assert labels == [e.label for e in entries]
    assert feed.label_at("bob", viewer, None, end, snapshot, len(entries)) is None
