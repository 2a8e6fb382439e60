"""Benchmark: the mail inspector against a bare standard-library walk of the same messages.

Why this exists: every message through the gateway is inspected, so the inspector must cost
little more than reading the message at all. The floor is what any Python filter pays:
``email.message_from_bytes(raw, policy=policy.default)``, ``walk()`` and ``get_content()`` of
every leaf. The figure that matters is the inspector's rate as a share of that floor's (the
issue's goal: at least 80 %), on the mail samples, on generated messages (a URL-heavy
newsletter, plain text, attachments, a zip) and on one 50 MB message, whose peak memory is
measured too (each contender in a child process of its own, ``ru_maxrss``).

The inspector keeps normal forms of URLs between messages; the figures are given with that
cache warm (a gateway's steady state) and cleared before every message (``cold``).

Usage::

    .venv/bin/python bench/mail_inspect.py [--repeat 5] [--skip-big]
"""

from __future__ import annotations

import argparse
import email
import io
import os
import random
import resource
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from pathlib import Path

from feedgate.mail import _urls
from feedgate.mail.inspect import inspect_message

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "mail"


def baseline(raw: bytes) -> None:
    message = email.message_from_bytes(raw, policy=policy.default)
    for part in message.walk():
        if not part.is_multipart():
            try:
                part.get_content()  # type: ignore[attr-defined]
            except Exception:
                part.get_payload(decode=True)


def inspect_cold(raw: bytes) -> None:
    _urls._NORMAL_FORMS.clear()
    inspect_message(raw)


def inspect_warm(raw: bytes) -> None:
    inspect_message(raw)


def generated(rng: random.Random) -> list[tuple[str, bytes]]:
    out = []
    m = EmailMessage()
    m["From"] = "News <news@shop.example.com>"
    m["Subject"] = "Weekly deals"
    m["Received"] = "from mx.shop.example.com (mx.shop.example.com [192.0.2.10]) by mx.local"
    links = "".join(
        f'<p><a href="https://shop.example.com/p/{i}?utm_source=x&amp;id={i}">Item {i}</a>'
        f' <img src="https://cdn.example.com/i/{i}.png"></p>\n'
        for i in range(60)
    )
    m.set_content("Plain version " + " ".join(f"https://shop.example.com/p/{i}" for i in range(60)))
    m.add_alternative(f"<html><body>{links}</body></html>", subtype="html")
    out.append(("newsletter (180 links)", m.as_bytes()))
    m = EmailMessage()
    m["From"] = "a@b.example"
    m["Subject"] = "hi"
    m.set_content("Hello,\n\nsee you at https://meet.example.com/x tomorrow.\n" * 5)
    out.append(("plain text", m.as_bytes()))
    m = EmailMessage()
    m["From"] = "a@b.example"
    m.set_content("report attached\n")
    m.add_attachment(
        rng.randbytes(1_000_000), maintype="application", subtype="pdf", filename="r.pdf"
    )
    out.append(("1 MB attachment", m.as_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(20):
            archive.writestr(f"f{i}.txt", rng.randbytes(20_000))
    m = EmailMessage()
    m["From"] = "a@b.example"
    m.set_content("zip attached\n")
    m.add_attachment(buffer.getvalue(), maintype="application", subtype="zip", filename="a.zip")
    out.append(("zip of 20 members", m.as_bytes()))
    return out


def big_message(rng: random.Random) -> bytes:
    m = EmailMessage()
    m["From"] = "a@b.example"
    m.set_content("big attachment, and a link https://big.example.com/\n")
    m.add_attachment(
        rng.randbytes(37_000_000),
        maintype="application",
        subtype="octet-stream",
        filename="big.bin",
    )
    return m.as_bytes()  # ~50 MB once base64-encoded


def best(fn: Callable[[bytes], None], raw: bytes, repeat: int, number: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn(raw)
        times.append((time.perf_counter() - start) / number)
    return min(times)


def child_peak(which: str, path: str) -> None:
    raw = Path(path).read_bytes()
    start = time.perf_counter()
    {"baseline": baseline, "inspect": inspect_warm}[which](raw)
    took = time.perf_counter() - start
    print(f"{took:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_peak(*args.child)
        return
    rng = random.Random(12)
    corpus = [(p.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*.eml"))]
    corpus += generated(rng)
    totals = {"baseline": 0.0, "warm": 0.0, "cold": 0.0}
    print(f"{'message':40s} {'bytes':>9s} {'stdlib µs':>10s} {'warm':>6s} {'cold':>6s}")
    for name, raw in corpus:
        number = 5 if len(raw) > 100_000 else 100
        base = best(baseline, raw, args.repeat, number)
        warm = best(inspect_warm, raw, args.repeat, number)
        cold = best(inspect_cold, raw, args.repeat, number)
        totals["baseline"] += base
        totals["warm"] += warm
        totals["cold"] += cold
        print(
            f"{name[:40]:40s} {len(raw):9d} {base * 1e6:10.0f} {base / warm:6.2f} "
            f"{base / cold:6.2f}"
        )
    print(
        f"{'whole corpus (rate vs stdlib)':40s} {'':9s} {totals['baseline'] * 1e6:10.0f} "
        f"{totals['baseline'] / totals['warm']:6.2f} {totals['baseline'] / totals['cold']:6.2f}"
    )
    if args.skip_big:
        return
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "feedgate-bench-50mb.eml"
    path.write_bytes(big_message(rng))
    print(f"\n{path.stat().st_size / 1e6:.1f} MB message, one run each in a child process:")
    for which in ("baseline", "inspect"):
        result = subprocess.run(
            [sys.executable, __file__, "--child", which, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        took, peak_kib = result.stdout.split()
        print(f"  {which:9s} {float(took):6.2f} s   peak RSS {int(peak_kib) / 1024:7.0f} MiB")
    path.unlink()


if __name__ == "__main__":
    main()
