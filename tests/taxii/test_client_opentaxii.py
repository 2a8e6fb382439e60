"""The client library against a real OpenTAXII 0.9.3 (plain and TLS with client certificates)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from feedgate.stix import read_observables
from feedgate.taxii import messages as tm
from feedgate.taxii.client import StatusError, TaxiiClient, TransportError
from peers import OpenTaxiiServer, load_blocks


def client(server: OpenTaxiiServer, **kwargs: object) -> TaxiiClient:
    options: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "use_https": server.scheme == "https",
        "discovery_path": server.discovery_path,
        "username": server.username,
        "password": server.password,
    }
    if server.tls is not None:
        options.update(
            cert_file=str(server.tls.client_cert),
            key_file=str(server.tls.client_key),
            ca_cert=str(server.tls.ca),
        )
    options.update(kwargs)
    return TaxiiClient(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("page", ["poll_path", "poll_big_path"])
def test_poll_every_block_whatever_the_page_size(opentaxii: OpenTaxiiServer, page: str) -> None:
    with client(opentaxii) as taxii:
        blocks = list(taxii.poll(opentaxii.collection_a, uri=getattr(opentaxii, page)))
    assert len(blocks) == opentaxii.collection_a_count
    ids = [seeded.package_id for seeded in opentaxii.collection_a_blocks]
    assert all(ident.encode() in b.content for ident, b in zip(ids, blocks, strict=True))
    assert [b.timestamp_label for b in blocks] == sorted(b.timestamp_label for b in blocks)


def test_poll_window_is_exclusive_begin_inclusive_end(opentaxii: OpenTaxiiServer) -> None:
    stamps = [seeded.timestamp for seeded in opentaxii.collection_a_blocks]
    with client(opentaxii) as taxii:
        blocks = list(
            taxii.poll(opentaxii.collection_a, stamps[1], stamps[4], uri=opentaxii.poll_path)
        )
    assert [b.timestamp_label for b in blocks] == stamps[2:5]


def test_polled_blocks_read_as_stix(opentaxii: OpenTaxiiServer, tmp_path: Path) -> None:
    with client(opentaxii) as taxii:
        blocks = list(taxii.poll(opentaxii.collection_a, uri=opentaxii.poll_big_path))
    values = [o.value for b in blocks for o in read_observables(_file(tmp_path, b.content))]
    assert "malicious1.example.com" in values and "10.0.0.0" in values


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"block-{abs(hash(data))}.xml"
    path.write_bytes(data)
    return path


def test_empty_collection_polls_nothing(opentaxii: OpenTaxiiServer) -> None:
    with client(opentaxii) as taxii:
        assert list(taxii.poll(opentaxii.empty_collection, uri=opentaxii.poll_path)) == []


def test_unknown_collection_is_not_found_with_the_item(opentaxii: OpenTaxiiServer) -> None:
    with client(opentaxii) as taxii, pytest.raises(StatusError) as info:
        list(taxii.poll("no-such-collection", uri=opentaxii.poll_path))
    assert info.value.status_type == tm.ST_NOT_FOUND
    assert info.value.details.get(tm.SD_ITEM) == ("no-such-collection",)


def test_wrong_credentials_are_unauthorized(opentaxii: OpenTaxiiServer) -> None:
    with client(opentaxii, password="wrong") as taxii, pytest.raises(StatusError) as info:
        list(taxii.poll(opentaxii.collection_a, uri=opentaxii.poll_path))
    assert info.value.status_type == tm.ST_UNAUTHORIZED


def test_jwt_authentication(opentaxii: OpenTaxiiServer) -> None:
    with client(opentaxii, jwt_auth_url=opentaxii.jwt_auth_path) as taxii:
        assert len(list(taxii.poll(opentaxii.collection_a, uri=opentaxii.poll_path))) == 7


def test_discovery_and_collections(opentaxii: OpenTaxiiServer) -> None:
    with client(opentaxii) as taxii:
        services = taxii.discover_services()
        names = {
            c.collection_name
            for c in taxii.get_collections(uri=opentaxii.collection_management_path)
        }
    assert {s.service_type for s in services} >= {tm.SVC_POLL, tm.SVC_INBOX, tm.SVC_DISCOVERY}
    assert {opentaxii.collection_a, opentaxii.empty_collection} <= names


def test_push_then_poll_it_back(opentaxii: OpenTaxiiServer) -> None:
    stamp = datetime.now(UTC).replace(microsecond=0)
    marker = f"pushed-{stamp.timestamp():.0f}"
    package = (
        '<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" '
        f'id="ex:{marker}" version="1.1.1"/>'
    )
    with client(opentaxii) as taxii:
        taxii.push(
            package,
            tm.CB_STIX_XML_111,
            uri=opentaxii.inbox_path,
            collection_names=[opentaxii.inbox_collection],
        )
        blocks = list(taxii.poll(opentaxii.inbox_collection, uri=opentaxii.poll_big_path))
    assert any(marker.encode() in b.content for b in blocks)


def test_subscription_lifecycle(opentaxii: OpenTaxiiServer) -> None:
    path = opentaxii.collection_management_path
    with client(opentaxii) as taxii:
        created = taxii.subscribe(opentaxii.collection_a, uri=path)
        subscription = created.subscriptions[0].subscription_id
        paused = taxii.pause_subscription(opentaxii.collection_a, subscription, uri=path)
        resumed = taxii.resume_subscription(opentaxii.collection_a, subscription, uri=path)
        status = taxii.get_subscription_status(opentaxii.collection_a, subscription, uri=path)
        gone = taxii.unsubscribe(opentaxii.collection_a, subscription, uri=path)
    assert paused.subscriptions[0].status == tm.SS_PAUSED
    assert resumed.subscriptions[0].status == tm.SS_ACTIVE
    assert status.subscriptions[0].subscription_id == subscription
    assert gone.subscriptions[0].status == tm.SS_UNSUBSCRIBED


def test_many_parts(opentaxii: OpenTaxiiServer) -> None:
    loaded = load_blocks(opentaxii, opentaxii.big_collection, 25)
    with client(opentaxii) as taxii:
        blocks = list(
            taxii.poll(opentaxii.big_collection, loaded.first, loaded.last, uri=opentaxii.poll_path)
        )
    assert len(blocks) == 24  # the window's begin is exclusive


# --- TLS -------------------------------------------------------------------------------------


def test_tls_with_client_certificate(opentaxii_tls: OpenTaxiiServer) -> None:
    with client(opentaxii_tls) as taxii:
        assert len(list(taxii.poll(opentaxii_tls.collection_a, uri=opentaxii_tls.poll_path))) == 7


def test_encrypted_client_key_with_its_password(opentaxii_tls: OpenTaxiiServer) -> None:
    tls = opentaxii_tls.tls
    assert tls is not None
    with client(
        opentaxii_tls, key_file=str(tls.client_key_encrypted), key_password=tls.client_key_password
    ) as taxii:
        assert len(taxii.discover_services()) > 0


def test_wrong_key_password_is_a_clear_error(opentaxii_tls: OpenTaxiiServer) -> None:
    tls = opentaxii_tls.tls
    assert tls is not None
    with pytest.raises(TransportError, match="cannot load the client certificate"):
        client(opentaxii_tls, key_file=str(tls.client_key_encrypted), key_password="nope")


def test_no_client_certificate_is_refused(opentaxii_tls: OpenTaxiiServer) -> None:
    with (
        client(opentaxii_tls, cert_file=None, key_file=None) as taxii,
        pytest.raises(TransportError),
    ):
        taxii.discover_services()


def test_explicit_ca_wins_over_the_environment(
    opentaxii_tls: OpenTaxiiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = opentaxii_tls.tls
    assert tls is not None
    # The machines point these at their own bundle; a CA file given to us must win.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.other_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca))
    with client(opentaxii_tls) as taxii:
        assert len(taxii.discover_services()) > 0


def test_wrong_ca_fails_and_verify_off_passes(opentaxii_tls: OpenTaxiiServer) -> None:
    tls = opentaxii_tls.tls
    assert tls is not None
    with (
        client(opentaxii_tls, ca_cert=str(tls.other_ca)) as taxii,
        pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"),
    ):
        taxii.discover_services()
    with client(opentaxii_tls, ca_cert=None, verify_ssl=False) as taxii:
        assert len(taxii.discover_services()) > 0


# --- proxies ---------------------------------------------------------------------------------


def test_http_proxy(opentaxii: OpenTaxiiServer) -> None:
    from relay_proxy import RelayProxy

    with RelayProxy() as proxy, client(opentaxii, proxy_url=proxy.url) as taxii:
        assert len(list(taxii.poll(opentaxii.collection_a, uri=opentaxii.poll_path))) == 7
    assert proxy.seen and proxy.seen[0].startswith(f"POST {opentaxii.base_url}")


def test_https_through_a_proxy_tunnel_and_a_bare_proxy_address(
    opentaxii_tls: OpenTaxiiServer,
) -> None:
    from relay_proxy import RelayProxy

    with RelayProxy() as proxy:
        bare = proxy.url.removeprefix("http://")  # no scheme: cabby's --proxy-url without type
        with client(opentaxii_tls, proxy_url=bare) as taxii:
            assert len(taxii.discover_services()) > 0
    assert proxy.seen[0].startswith(f"CONNECT {opentaxii_tls.host}:{opentaxii_tls.port}")


# --- TAXII 1.0 -------------------------------------------------------------------------------


def test_taxii_10_services_are_usable(opentaxii: OpenTaxiiServer) -> None:
    # OpenTAXII checks every 1.0 message against the 1.0 schema (message ids are digits only):
    # each of these requests is answered, not refused as BAD_MESSAGE.
    with client(opentaxii, version="1.0") as taxii:
        services = taxii.discover_services()
        feeds = taxii.get_collections(uri=opentaxii.collection_management_path)
        blocks = list(taxii.poll(opentaxii.collection_a, uri=opentaxii.poll_big_path))
        taxii.push(
            '<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" id="ex:p10"/>',
            tm.CB_STIX_XML_111,
            uri=opentaxii.inbox_10_path,  # not the inbox feeding the collections counted here
        )
    assert tm.SVC_POLL in {s.service_type for s in services}
    assert opentaxii.collection_a in {f.collection_name for f in feeds}
    assert len(blocks) == opentaxii.collection_a_count
