"""Reading a file, or a poll part held in memory, on several processes says exactly what
reading it in one process says."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedgate import stix
from feedgate.observables import EncodedContext, Kind, LayeredContext, Observable, context_json
from feedgate.stix import ReadStats, StixReadError, TaxiiStatusError, _parallel, read_observables
from feedgate.xml import XMLParseError
from stix_helpers import address, indicator, obs, package

TAXII = "http://taxii.mitre.org/messages/taxii_xml_binding-1.1"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_parallel, "CHUNK_BYTES", 4096)  # many ranges from small inputs
    monkeypatch.setattr(_parallel, "_BLOCK", 1000)  # and many scanning blocks: tokens straddle
    monkeypatch.setattr(_parallel, "PART_CHUNK_BYTES", 4096)  # the same for bytes in memory
    monkeypatch.setattr(stix, "_PARALLEL_MIN", 0)


def _pkg(i: int) -> str:
    return package(
        f"<stix:Indicators>{indicator(obs(address(f'192.0.2.{i % 250}')), ind_id=f'ex:i-{i}')}"
        "</stix:Indicators>",
        pkg_id=f"ex:Package-{i}",
        title=f"pulse {i}",
    )


def _block(content: str) -> str:
    return (
        "<taxii_11:Content_Block>"
        '<taxii_11:Content_Binding binding_id="urn:stix.mitre.org:xml:1.1.1"/>'
        f"<taxii_11:Content>{content}</taxii_11:Content></taxii_11:Content_Block>"
    )


def _response(blocks: str, decl: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    return (
        f'{decl}<taxii_11:Poll_Response xmlns:taxii_11="{TAXII}" message_id="1" '
        f'in_response_to="2" collection_name="c" more="false">{blocks}'
        "</taxii_11:Poll_Response>\n"
    )


def _read(path: Path | bytes, workers: int) -> tuple[list[Observable], ReadStats, str | None]:
    stats = ReadStats()
    found: list[Observable] = []
    error = None
    try:
        for item in read_observables(path, stats=stats, workers=workers):
            found.append(item)
    except (StixReadError, XMLParseError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return found, stats, error


def _same(path: Path) -> tuple[list[Observable], ReadStats, str | None]:
    one = _read(path, 1)
    for two in (_read(path, 2), _read(path.read_bytes(), 2)):
        assert two[0] == one[0]
        assert two[1].to_dict() == one[1].to_dict()
        assert two[2] == one[2]
        # Contexts encoded by the workers are what the one-process reader's would encode to.
        assert [context_json(o.context) for o in two[0]] == [
            context_json(dict(o.context)) for o in one[0]
        ]
    return one


def _write(tmp_path: Path, text: str, name: str = "in.xml", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_poll_response_with_escaped_blocks(tmp_path: Path) -> None:
    contents = [_pkg(i) for i in range(300)]
    for i in range(0, 300, 10):  # some servers send the package as escaped text
        contents[i] = contents[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    found, stats, error = _same(_write(tmp_path, _response("".join(map(_block, contents)))))
    assert error is None
    assert [o.value for o in found] == [f"192.0.2.{i % 250}" for i in range(300)]
    assert stats.packages == 300 and stats.content_blocks == 300


def test_concatenated_packages(tmp_path: Path) -> None:
    text = "\n".join(f'<?xml version="1.0"?>{_pkg(i)}' for i in range(300))
    found, stats, error = _same(_write(tmp_path, text))
    assert error is None and len(found) == 300 and stats.packages == 300


def test_end_tag_inside_cdata_and_comments(tmp_path: Path) -> None:
    blocks = []
    for i in range(200):
        block = _block(_pkg(i))
        if i % 7 == 0:
            filler = "x" * 3000
            block = block.replace(
                "<taxii_11:Content_Binding",
                f"<!-- </taxii_11:Content_Block> {filler} --><taxii_11:Content_Binding",
            )
        blocks.append(block)
    text = _response("".join(blocks)).replace(
        "<stix:Title>pulse 50</stix:Title>",
        f"<stix:Title><![CDATA[pulse </taxii_11:Content_Block> {'y' * 5000}]]></stix:Title>",
    )
    found, _, error = _same(_write(tmp_path, text))
    assert error is None and len(found) == 200


def test_truncated_response_is_an_error_as_in_one_process(tmp_path: Path) -> None:
    text = _response("".join(_block(_pkg(i)) for i in range(200)))
    cut = text.rfind("<taxii_11:Content_Block>") + 40
    found, _, error = _same(_write(tmp_path, text[:cut]))
    assert error is not None and "not well-formed" in error
    assert len(found) == 199


def test_two_concatenated_poll_responses(tmp_path: Path) -> None:
    one = _response("".join(_block(_pkg(i)) for i in range(100)))
    found, _, error = _same(_write(tmp_path, one + one))
    assert error is None and len(found) == 200


def test_latin1_declared_response(tmp_path: Path) -> None:
    text = _response(
        "".join(_block(_pkg(i)) for i in range(100)),
        decl='<?xml version="1.0" encoding="ISO-8859-1"?>',
    ).replace("pulse 3<", "pulse drei \u00fc<")
    found, _, error = _same(_write(tmp_path, text, encoding="latin-1"))
    assert error is None and found[3].context["package_title"] == "pulse drei \u00fc"


def test_status_message_after_packages(tmp_path: Path) -> None:
    status = (
        f'<taxii_11:Status_Message xmlns:taxii_11="{TAXII}" message_id="9" in_response_to="2" '
        'status_type="FAILURE"><taxii_11:Message>backend gone</taxii_11:Message>'
        "</taxii_11:Status_Message>"
    )
    path = _write(tmp_path, "\n".join(_pkg(i) for i in range(200)) + status)
    found, _, error = _same(path)
    assert len(found) == 200
    assert error == (
        "TaxiiStatusError: the input is a TAXII Status_Message with status FAILURE: backend gone"
    )


def test_status_error_survives_a_process_boundary() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(TaxiiStatusError("RETRY", "later")))
    assert (error.status_type, error.status_message) == ("RETRY", "later")


def test_poll_part_in_memory_goes_to_the_workers() -> None:
    data = _response("".join(_block(_pkg(i)) for i in range(300))).encode()
    found = list(read_observables(data, workers=2))
    assert len(found) == 300
    # read by the workers: contexts come back encoded, each package's shared layer once
    assert all(type(o.context) is LayeredContext for o in found)
    assert all(type(o.context.own) is EncodedContext for o in found)  # type: ignore[attr-defined]
    assert all(type(o.context.shared) is EncodedContext for o in found)  # type: ignore[attr-defined]
    assert found[0].context.shared["package_title"] == "pulse 0"  # type: ignore[attr-defined]
    assert found[0].context.own["indicator_id"] == "ex:i-0"  # type: ignore[attr-defined]
    in_process = list(read_observables(data))
    assert [dict(o.context) for o in found] == [dict(o.context) for o in in_process]
    assert [list(o.context) for o in found] == [list(o.context) for o in in_process]


CHILD = """
import json, sys, time
from multiprocessing import forkserver
from feedgate.stix import _parallel

_parallel.start_workers(2)
pool = _parallel.shared_pool(2)
for future in [pool.submit(_parallel._ready) for _ in range(4)]:
    future.result()
pids = [*pool._processes, forkserver._forkserver._forkserver_pid]
print(json.dumps(pids), flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return True
    return state in (b"Z", b"X")  # a zombie nobody reaped is gone all the same


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_workers_do_not_outlive_a_killed_poller(reaped: bool) -> None:
    """kill -9 of the process that uses the pool ends its fork server and workers too, also
    while the killed process is a zombie: a parent blocked reading the pipes the workers hold
    (``Popen.communicate()``) would never reap it otherwise."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None
        pids = json.loads(child.stdout.readline())
        assert len(pids) == 3 and not any(_gone(pid) for pid in pids)
        os.kill(child.pid, signal.SIGKILL)
        if reaped:
            child.wait(10)
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in pids), [p for p in pids if not _gone(p)]
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()


def test_worker_batches_carry_each_observables_digest() -> None:
    from feedgate.observables import observable_digest

    data = _response("".join(_block(_pkg(i)) for i in range(300))).encode()
    job = _parallel.PartJob(data, 2, 10**9)
    batches = list(job.batches(ReadStats()))
    assert sum(b.size for b in batches) == 300
    for batch in batches:
        assert batch.digests == [
            observable_digest(kind, value)
            for kind, value in zip(batch.kinds, batch.values, strict=True)
        ]
    # text orjson refuses travels pickled, digests included
    odd = [Observable(Kind.DOMAIN, "bad\ud800.example", None, {"t": "\ud800"})]
    batch = _parallel._unpack(_parallel._pack(odd))
    assert list(batch.observables()) == odd
    assert batch.digests == [observable_digest("domain", "bad\ud800.example")]
