"""The peer fixtures work: cabby 0.1.23 against OpenTAXII 0.9.3, plain and TLS with client
certificates. These also pin down peer behaviour that feedgate's client and CLIs must match."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import ssl

import pytest

from peers import OpenTaxiiServer, RunCabby, discovery_request, load_blocks

PACKAGE_ID = re.compile(r'<(?:[\w.-]+:)?STIX_Package\b[^>]*?\sid="([^"]+)"')


def package_ids(stdout: str) -> list[str]:
    return PACKAGE_ID.findall(stdout)


def requests_sent(stderr: str) -> list[str]:
    """cabby logs one `Sending <Message_Type> to <url>` line per request."""
    return re.findall(r"Sending (\w+) to ", stderr)


def test_discovery_lists_every_service(opentaxii: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    done = run_cabby("taxii-discovery", *opentaxii.cabby_args(discovery=True, auth=False))
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr
    # each service is listed once per protocol binding (http and https)
    assert "10 services discovered" in done.stderr
    for path in (
        opentaxii.discovery_path,
        opentaxii.collection_management_path,
        opentaxii.inbox_path,
        opentaxii.poll_path,
        opentaxii.poll_big_path,
    ):
        assert f"Service Address: {opentaxii.url(path)}\n" in done.stdout
    for kind in ("DISCOVERY", "COLLECTION_MANAGEMENT", "INBOX", "POLL"):
        assert f"Service Type: {kind}\n" in done.stdout


def test_collections_list_per_account(opentaxii: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    args = opentaxii.cabby_args(opentaxii.collection_management_path)
    done = run_cabby("taxii-collections", *args)
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr
    names = re.findall(r"Collection Name: (\S+)", done.stdout)
    assert sorted(names) == sorted(
        [
            opentaxii.collection_a,
            opentaxii.empty_collection,
            opentaxii.big_collection,
            opentaxii.inbox_collection,
            opentaxii.stix_only_collection,
        ]
    )
    # the reader account sees only what it may read
    reader = [
        *opentaxii.cabby_args(opentaxii.collection_management_path, auth=False),
        *("--username", opentaxii.reader_username, "--password", opentaxii.reader_password),
    ]
    done = run_cabby("taxii-collections", *reader)
    assert re.findall(r"Collection Name: (\S+)", done.stdout) == [opentaxii.collection_a]


def test_poll_pages_through_fulfillment(opentaxii: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    args = opentaxii.cabby_args(opentaxii.poll_path)
    done = run_cabby("taxii-poll", *args, "--collection", opentaxii.collection_a)
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr
    expected = [block.package_id for block in opentaxii.collection_a_blocks]
    assert package_ids(done.stdout) == expected  # every block once, in timestamp order
    assert f"{len(expected)} blocks polled" in done.stderr
    # 7 blocks, 2 per part: parts 1-4 hold blocks. cabby does not read `more` on fulfilment
    # responses: it asks for parts until one comes back empty (part 5 here).
    assert requests_sent(done.stderr) == ["Poll_Request"] + ["Poll_Fulfillment"] * 4


def test_poll_one_part_and_a_window(opentaxii: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    blocks = opentaxii.collection_a_blocks
    args = opentaxii.cabby_args(opentaxii.poll_big_path)
    done = run_cabby("taxii-poll", *args, "--collection", opentaxii.collection_a)
    assert requests_sent(done.stderr) == ["Poll_Request"]
    assert len(package_ids(done.stdout)) == len(blocks)
    # begin is exclusive, end inclusive
    window = ["--begin", blocks[1].timestamp.isoformat(), "--end", blocks[3].timestamp.isoformat()]
    done = run_cabby("taxii-poll", *args, "--collection", opentaxii.collection_a, *window)
    assert package_ids(done.stdout) == [blocks[2].package_id, blocks[3].package_id]
    done = run_cabby("taxii-poll", *args, "--collection", opentaxii.empty_collection)
    assert "0 blocks polled" in done.stderr


def test_failures_are_logged_with_exit_status_0(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby
) -> None:
    no_auth = opentaxii.cabby_args(opentaxii.poll_path, auth=False)
    done = run_cabby("taxii-poll", *no_auth, "--collection", opentaxii.collection_a)
    assert done.returncode == 0
    assert done.stdout == ""
    assert "ERROR: Server Error: UNAUTHORIZED: \n" in done.stderr
    args = opentaxii.cabby_args(opentaxii.poll_path)
    done = run_cabby("taxii-poll", *args, "--collection", "no-such-collection")
    assert done.returncode == 0
    assert (
        "ERROR: Server Error: NOT_FOUND: ITEM=no-such-collection; "
        "Requested collection was not found\n"
    ) in done.stderr


def test_jwt_auth(opentaxii: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    args = [*opentaxii.cabby_args(opentaxii.poll_big_path), "--jwt-auth", opentaxii.jwt_auth_path]
    done = run_cabby("taxii-poll", *args, "--collection", opentaxii.collection_a)
    assert "Obtaining JWT token from " + opentaxii.url(opentaxii.jwt_auth_path) in done.stderr
    assert len(package_ids(done.stdout)) == opentaxii.collection_a_count


def test_load_blocks(opentaxii: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    loaded = load_blocks(opentaxii, opentaxii.big_collection, 2500, start=start)
    assert loaded.n == 2500
    assert loaded.first == start
    assert loaded.last == start + dt.timedelta(seconds=2499)
    assert loaded.volumes[opentaxii.big_collection] >= 2500
    assert loaded.volumes[opentaxii.collection_a] == opentaxii.collection_a_count
    # the last three blocks, by window
    begin = (start + dt.timedelta(seconds=2496)).isoformat()
    args = opentaxii.cabby_args(opentaxii.poll_big_path)
    done = run_cabby(
        "taxii-poll", *args, "--collection", opentaxii.big_collection, "--begin", begin
    )
    assert len(package_ids(done.stdout)) == 3, done.stderr
    more = load_blocks(opentaxii, opentaxii.big_collection, 10)  # goes on after the newest
    assert more.first == start + dt.timedelta(seconds=2500)


# --- TLS with client certificates ---------------------------------------------------------------


def test_tls_refuses_a_client_without_certificate(opentaxii_tls: OpenTaxiiServer) -> None:
    assert opentaxii_tls.tls is not None
    tls = opentaxii_tls.tls
    status, body = discovery_request(opentaxii_tls)  # with the client certificate
    assert status == 200 and "Discovery_Response" in body
    connection = http.client.HTTPSConnection(
        opentaxii_tls.host, opentaxii_tls.port, timeout=10, context=tls.client_context(cert=False)
    )
    with pytest.raises((ssl.SSLError, ConnectionError)):
        connection.request("POST", opentaxii_tls.discovery_path, body="")
        connection.getresponse().read()
    connection.close()


def test_tls_encrypted_client_key(opentaxii_tls: OpenTaxiiServer) -> None:
    assert opentaxii_tls.tls is not None
    context = opentaxii_tls.tls.client_context(encrypted=True)
    status, body = discovery_request(opentaxii_tls, context=context)
    assert status == 200 and "Discovery_Response" in body


def test_tls_cabby(opentaxii_tls: OpenTaxiiServer, run_cabby: RunCabby) -> None:
    assert opentaxii_tls.tls is not None
    tls = opentaxii_tls.tls
    collection = ("--collection", opentaxii_tls.collection_a)
    done = run_cabby("taxii-poll", *opentaxii_tls.cabby_args(opentaxii_tls.poll_path), *collection)
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr
    assert len(package_ids(done.stdout)) == opentaxii_tls.collection_a_count
    assert f"to {opentaxii_tls.url(opentaxii_tls.poll_path)}" in done.stderr

    no_cert = opentaxii_tls.cabby_args(opentaxii_tls.poll_path, client_cert=False)
    done = run_cabby("taxii-poll", *no_cert, *collection)
    assert done.stdout == ""
    assert re.search(r"ERROR: .*(SSLError|certificate required|Connection reset)", done.stderr)

    # cabby quirk: with REQUESTS_CA_BUNDLE set (as on our machines), requests lets it win over
    # cabby's --ca-cert, so cabby rejects a server signed by the test CA.
    args = opentaxii_tls.cabby_args(opentaxii_tls.poll_path)
    done = run_cabby(
        "taxii-poll",
        *args,
        *collection,
        keep_ca_env=True,
        env={"REQUESTS_CA_BUNDLE": str(tls.other_ca)},
    )
    assert done.stdout == ""
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr

    # cabby quirk: --key-password uses ssl.Purpose.CLIENT_AUTH (a server context): broken on
    # Python >= 3.10, whatever the password.
    encrypted = [
        *opentaxii_tls.cabby_args(opentaxii_tls.poll_path, client_cert=False),
        *("--cert", str(tls.client_cert), "--key", str(tls.client_key_encrypted)),
        *("--key-password", tls.client_key_password),
    ]
    done = run_cabby("taxii-poll", *encrypted, *collection)
    assert done.stdout == ""
    assert "Cannot create a client socket with a PROTOCOL_TLS_SERVER context" in done.stderr
