"""cabby 0.1.23, as an admin testing an OTX feed would use it, against the hub."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hub_fixture import PULSES, Hub

from peers import PeersVenv, RunCabby


def _args(hub: Hub, path: str) -> list[str]:
    return [
        "--host",
        hub.host,
        "--port",
        str(hub.port),
        "--path",
        path,
        "--username",
        hub.api_key,
        "--password",
        "x",
    ]


def test_cabby_collections(hub: Hub, run_cabby: RunCabby) -> None:
    done = run_cabby("taxii-collections", *_args(hub, "/taxii/collections"))
    assert "ERROR" not in done.stderr, done.stderr
    assert f"Collection Name: {hub.collection}" in done.stdout
    assert f"Collection Description: Data feed for user: {hub.author}" in done.stdout


def test_cabby_poll_every_block_reads_with_python_stix(
    hub: Hub, run_cabby: RunCabby, peers_venv: PeersVenv, tmp_path: Path
) -> None:
    out = tmp_path / "blocks"
    out.mkdir()
    done = run_cabby(
        "taxii-poll",
        *_args(hub, "/taxii/poll"),
        "--collection",
        hub.collection,
        "--dest-dir",
        str(out),
    )
    assert "ERROR" not in done.stderr, done.stderr
    assert hub.visible() < PULSES  # the seed has private pulses: they are not sent
    assert re.search(rf"\b{hub.visible()} blocks polled", done.stderr)
    files = sorted(out.iterdir())
    assert len(files) == hub.visible()
    script = (
        "import json, sys\n"
        "from stix.core import STIXPackage\n"
        "out = []\n"
        "for name in sys.argv[1:]:\n"
        "    pkg = STIXPackage.from_xml(name)\n"
        "    values = []\n"
        "    for ind in pkg.indicators or []:\n"
        ""
        "        values.append(ind.title.split(' from ')[0])\n"
        "    out.append([str(pkg.stix_header.short_description), values])\n"
        "print(json.dumps(out))\n"
    )
    parsed = peers_venv.run(["-c", script, *map(str, files)], check=True)
    packages = json.loads(parsed.stdout)
    by_url = {url.rsplit("/", 1)[-1]: values for url, values in packages}
    for entry in hub.store.pulses_page(hub.author, limit=100):
        pulse = entry.pulse
        if pulse.id in by_url:
            expected = sorted(
                i.indicator
                for i in pulse.usable_indicators()
                if i.type
                not in {
                    "FilePath",
                    "CVE",
                    "YARA",
                    "JA3",
                    "osquery",
                    "SSLCertFingerprint",
                    "BitcoinAddress",
                    "FileHash-PEHASH",
                    "FileHash-IMPHASH",
                }
            )
            assert sorted(by_url[pulse.id]) == expected, pulse.name
        assert (pulse.id in by_url) == pulse.public  # a private pulse is not alice's to see
    assert len(by_url) == hub.visible()
