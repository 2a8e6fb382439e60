"""Screenshots of every console page, on the demo's own data, for the README.

Runs ``feedgate up`` in a throw-away data directory (a seeded hub, the otx-demo source, one poll,
the gateway), sends two messages through the gateway (one clean, one carrying a demo URL, which
is quarantined), logs in as the ``admin`` that ``up`` printed, and saves each page of the nav at
1280x800 (a laptop screen) as ``docs/console/<page>.png``. Needs Debian's chromium (``make
sysdeps``) and Playwright (the ``test`` extra)::

    .venv/bin/python docs/console/shoot.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("FEEDGATE_TEST_CHROMIUM", "/usr/lib/chromium/chromium")
FEEDGATE = str(Path(sys.executable).parent / "feedgate")


def _mail(subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "billing@partner.example"
    msg["To"] = "accounts@example.com"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="feedgate-shots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDGATE_")}
        env |= {
            "XDG_DATA_HOME": tmp,
            "FEEDGATE_DB": f"{tmp}/feeds.db",
            "FEEDGATE_HUB_DB": f"{tmp}/hub.db",
        }
        up = subprocess.Popen(
            [FEEDGATE, "up", "--port", "0", "--gateway-port", "0", "--pulses", "40"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("API:"):
                break
        text = "".join(lines)
        console = re.search(r"^console:\s+(\S+)\s+\(user (\S+), password (\S+);", text, re.M)
        gateway = re.search(r"^gateway:\s+(\S+):(\d+)", text, re.M)
        if console is None or gateway is None:
            up.kill()
            raise SystemExit(f"feedgate up did not start as expected:\n{text}")
        url, user, password = console.groups()
        try:
            found = subprocess.run(
                [FEEDGATE, "observables", "--source", "otx-demo", "--kind", "url", "--limit", "1"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            listed = re.search(r"(https?://\S+)", found)
            with smtplib.SMTP(gateway.group(1), int(gateway.group(2)), timeout=60) as smtp:
                smtp.sendmail(
                    "billing@partner.example",
                    ["accounts@example.com"],
                    _mail("Minutes of Monday", "See you on Monday."),
                )
                if listed:
                    smtp.sendmail(
                        "billing@partner.example",
                        ["accounts@example.com"],
                        _mail("Invoice 4711 overdue", f"Please pay at {listed.group(1)}\n"),
                    )
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
                )
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{url}login")
                page.get_by_label("Username").fill(user)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_load_state()
                shots = {"login": None}
                nav = page.locator("nav a")
                targets = [
                    (nav.nth(i).inner_text().strip(), nav.nth(i).get_attribute("href"))
                    for i in range(nav.count())
                ]
                for name, href in targets:
                    if not href or not href.startswith("/"):
                        continue
                    page.goto(url.rstrip("/") + href)
                    page.wait_for_load_state()
                    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                    page.screenshot(path=str(HERE / f"{slug}.png"), full_page=False)
                    shots[slug] = href
                logout = browser.new_page(viewport={"width": 1280, "height": 800})
                logout.goto(f"{url}login")
                logout.screenshot(path=str(HERE / "login.png"))
                browser.close()
            print(json.dumps(shots, indent=1))
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
