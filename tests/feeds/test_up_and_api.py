"""`feedgate up` as a first-time admin runs it, then the REST API it serves."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
TOKEN = "test-token-0123456789abcdefghijklmnop"


def test_up_polls_the_demo_hub_and_serves_the_api(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path),
        "FEEDGATE_API_TOKEN": TOKEN,
        "NO_PROXY": "127.0.0.1",
    }
    env.pop("FEEDGATE_DB", None)
    env.pop("FEEDGATE_HUB_DB", None)
    up = subprocess.Popen(
        [FEEDGATE, "up", "--port", "0", "--gateway-port", "0", "--pulses", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("API:"):
                break
        text = "".join(lines)
        api = re.search(r"API:\s+(http://\S+)/api/v1/", text)
        assert api, text
        assert re.search(r'source "otx-demo": poll done: .* (\d+) observables read', text)
        assert re.search(r"hub:\s+http://127\.0\.0\.1:\d+/taxii/discovery", text)
        assert re.search(r"^gateway:\s+127\.0\.0\.1:\d+ -> relay 127\.0\.0\.1:\d+", text, re.M)
        assert "API key:" in text and "log file:" in text
        base = api.group(1)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{base}/api/v1/sources").status_code == 401
        sources = httpx.get(f"{base}/api/v1/sources", headers=auth).json()
        assert [s["name"] for s in sources] == ["otx-demo"]
        status = sources[0]["status"]
        assert status["result"] == "ok" and status["read"] > 0
        assert sources[0]["password_set"] is True and "password" not in sources[0]
        key = re.search(r"API key:\s+(\S+)", text)
        assert key, text
        # the demo key is the source's user name: stored and shown as a secret (item 6a)
        assert sources[0]["username"] == "(secret, set)" and sources[0]["username_secret"]
        assert key.group(1) not in str(sources)
        rows = httpx.get(f"{base}/api/v1/observables", params={"limit": "5"}, headers=auth).json()
        assert len(rows) == 5 and rows[0]["source"] == "otx-demo"
        again = httpx.post(f"{base}/api/v1/sources/otx-demo/poll", headers=auth, timeout=60).json()
        assert again["ok"] and again["new"] == 0
        bad = httpx.post(
            f"{base}/api/v1/sources",
            headers=auth,
            json={"name": "x", "hostname": "https://otx.example/taxii", "collection": "c"},
        )
        assert bad.status_code == 400 and bad.json()["field"] == "hostname"
        added = httpx.post(
            f"{base}/api/v1/sources",
            headers=auth,
            json={
                "name": "second",
                "hostname": "127.0.0.1",
                "collection": "c",
                "polling_interval": "2h",
                "enabled": False,
            },
        )
        assert added.status_code == 201 and added.json()["polling_interval"] == "2h"
        assert (
            httpx.post(
                f"{base}/api/v1/sources",
                headers=auth,
                json={"name": "second", "hostname": "127.0.0.1", "collection": "c"},
            ).status_code
            == 409
        )
        patched = httpx.patch(
            f"{base}/api/v1/sources/second", headers=auth, json={"collection": "d"}
        )
        assert patched.json()["collection"] == "d"
        assert httpx.delete(f"{base}/api/v1/sources/second", headers=auth).status_code == 204
        assert httpx.get(f"{base}/api/v1/sources/second", headers=auth).status_code == 404
        log = httpx.get(f"{base}/api/v1/log", params={"source": "otx-demo"}, headers=auth).json()
        assert any("poll done" in row["line"] for row in log)
        spec = httpx.get(f"{base}/api/v1/openapi.json").json()
        assert "/api/v1/sources/{name}/poll" in spec["paths"]
        # the console, on the same port: admin's password shown this once, and it logs in
        console = re.search(
            r"^console:\s+(\S+)/  \(user admin, password (\S+); shown once\)$", text, re.M
        )
        assert console and console.group(1) == base and text.index("console:") < text.index("API:")
        with httpx.Client(base_url=base) as browser:
            form = browser.get("/login").text
            login = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert login, form
            fields = {"username": "admin", "password": console.group(2), "csrf_token": login[1]}
            assert browser.post("/login", data=fields).status_code == 303
            assert 'data-source="otx-demo"' in browser.get("/sources").text
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
