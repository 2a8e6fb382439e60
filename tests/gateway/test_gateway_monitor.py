"""A source in monitor mode behind the real gateway: its match is relayed untouched, and the
mail log line says what it would have done (``would_have``), the match log counts it as
monitored; switched to enforce (no restart), the same message is quarantined, logged and
counted as enforced."""

from __future__ import annotations

import dataclasses
import json
import logging
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import DOMAINS, Bench, Sink, bench, make_store, message

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.store import FeedStore
from feedgate.mail.gateway import GatewayConfig
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.quarantine import QuarantineStore
from postfix import wait_for


@dataclass
class Rig:
    bench: Bench
    db: Path
    sink: Sink
    port: int
    mail_log: Path

    def send(self, raw: bytes) -> tuple[int, str]:
        """The code and the queue id of the reply to the final dot."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            assert smtp.mail("a@sender.test")[0] == 250
            assert smtp.rcpt("user@rcpt.test")[0] == 250
            code, text = smtp.data(raw)
            return code, text.decode().split("queued as ", 1)[1].split()[0]

    def logged(self, queue_id: str) -> dict[str, Any]:
        lines = [json.loads(line) for line in self.mail_log.read_text().splitlines()]
        [line] = [entry for entry in lines if entry["queue_id"] == queue_id]
        return line


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())  # the workers inherit it
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    db = tmp_path / "feeds.db"
    store = make_store(db)  # source "quarantine" meets the default rule, threat-feeds
    set_mode(store, "quarantine", "monitor")
    store.close()
    with bench() as b:
        sink = Sink()
        server, sink_port = b.serve_sink(sink)
        config = GatewayConfig(relay=("127.0.0.1", sink_port), workers=1, scan_timeout=10.0)
        gateway, port, _pids = b.start_gateway(db, config, tmp_path / "mail.log")
        try:
            yield Rig(b, db, sink, port, tmp_path / "mail.log")
        finally:
            b.stop_gateway(gateway)
            b.close_server(server)


def set_mode(store: FeedStore, name: str, mode: str) -> None:
    """What ``feedgate source edit NAME --mode MODE`` writes."""
    source = store.get_source(name)
    assert source is not None
    store.update_source(dataclasses.replace(source, mode=mode))


def test_monitor_mode_logs_would_have_then_enforce_acts(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    raw = message("quarantine", subject="invoice")
    with caplog.at_level(logging.INFO, logger="feedgate.gateway"):
        code, queue_id = rig.send(raw)
    assert code == 250
    # The gateway's own line (its stderr) says it as well as the mail log.
    [said] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(queue_id)]
    assert said.endswith(
        "; would have: quarantine [threat-feeds] (source quarantine, monitor mode)"
    )
    [got] = rig.sink.received
    assert got.raw == raw  # delivered byte for byte: nothing was done
    line = rig.logged(queue_id)
    assert (line["action"], line["rules"], line["matches"]) == ("deliver", [], [])
    assert line["would_have"] == [
        {
            "part": "url",
            "kind": "domain",
            "value": DOMAINS["quarantine"],
            "source": "quarantine",
            "rules": ["threat-feeds"],
            "action": "quarantine",
        }
    ]
    clean_code, clean_id = rig.send(message(None))
    assert clean_code == 250 and "would_have" not in rig.logged(clean_id)

    feeds = FeedStore(engine(str(rig.db)))
    policy = PolicyStore(feeds.engine, feeds.source_names)
    try:
        counted = policy.hits(since=None)
        assert [(s.source, s.mode, s.hits) for s in counted.sources] == [
            ("quarantine", "monitor", 1)
        ]
        assert policy.hits(since=None, mode="enforce").sources == ()

        set_mode(feeds, "quarantine", "enforce")
        tries: list[str] = []

        def quarantined() -> bool:
            # The workers look at the store's version every second: until then a try is
            # delivered as before, and each try is a message of its own, counted below.
            code, ident = rig.send(message("quarantine", subject="invoice"))
            assert code == 250
            tries.append(ident)
            return rig.logged(ident)["action"] == "quarantine"

        wait_for("the enforce mode to reach the gateway's worker", quarantined, timeout=30)
        line = rig.logged(tries[-1])
        assert line["rules"] == ["threat-feeds"] and "would_have" not in line
        assert [m["source"] for m in line["matches"]] == ["quarantine"]
        [held] = [
            m for m in QuarantineStore(feeds.engine).list() if m.envelope.queue_id == tries[-1]
        ]
        assert held.subject == "invoice"
        assert len(rig.sink.received) == 2 + len(tries) - 1  # the monitored ones and the clean
        by_mode = {s.mode: s.hits for s in policy.hits(since=None).sources}
        assert by_mode == {"monitor": len(tries), "enforce": 1}
    finally:
        feeds.close()
