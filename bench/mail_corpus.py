"""A generated mail corpus for the mail benchmarks: messages as a gateway sees them.

Messages of 5 KB to 2 MB (sizes spread log-uniformly, so most are small as real mail is, a few
are big): a text/plain and text/html alternative full of prose and links, now and then a
quoted-printable body, attachments (binary, text, calendar) and, in some, a zip archive with a
few members. Every URL host and sender is under reserved names (RFC 2606) or documentation
addresses, so the corpus can be matched against generated observables without touching anyone.

The corpus is deterministic for a given ``seed`` and cached under ``bench/out/`` (it takes a
few seconds to build); :func:`corpus` returns the paths.

    PYTHONPATH=src .venv/bin/python bench/mail_corpus.py [--messages 400] [--seed 1]
"""

from __future__ import annotations

import argparse
import io
import math
import random
import zipfile
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
MIN_SIZE = 5_000
MAX_SIZE = 2_000_000

_WORDS = [
    "invoice",
    "payment",
    "account",
    "update",
    "review",
    "security",
    "notice",
    "please",
    "confirm",
    "the",
    "your",
    "of",
    "and",
    "to",
    "in",
    "for",
    "on",
    "with",
    "at",
    "by",
    "from",
    "this",
    "that",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "order",
    "shipment",
    "delivery",
    "password",
    "reset",
    "verify",
    "login",
    "document",
    "attached",
    "report",
    "quarterly",
    "meeting",
    "schedule",
]


def url_for(n: int) -> str:
    """The ``n``-th URL the corpus uses (the benchmark loads some of them as observables)."""
    return f"https://host{n}.example.net/path/{n}/page.html?id={n}"


def _prose(rng: random.Random, size: int, urls: list[str], html: bool) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        if urls and rng.random() < 0.02:
            url = urls[rng.randrange(len(urls))]
            words.append(f'<a href="{url}">{url}</a>' if html else url)
        else:
            words.append(rng.choice(_WORDS))
        length += len(words[-1]) + 1
        if len(words) % 14 == 0:
            words.append("<br>\n" if html else "\n")
    text = " ".join(words)
    return f"<html><body><p>{text}</p></body></html>\n" if html else text + "\n"


def _zip(rng: random.Random, members: int, size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            archive.writestr(f"doc{index}.bin", rng.randbytes(max(size // members, 64)))
    return buffer.getvalue()


def message(rng: random.Random, index: int) -> bytes:
    """One message of about a log-uniformly chosen size between 5 KB and 2 MB."""
    size = int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE))))
    urls = [url_for(rng.randrange(1_000_000)) for _ in range(rng.randrange(3, 40))]
    msg = EmailMessage()
    msg["Received"] = (
        f"from mx{index}.example.org (mx{index}.example.org [192.0.2.{index % 250 + 1}]) "
        "by gateway.example.com with ESMTPS id abc; Mon, 7 Dec 2026 10:00:00 +0000"
    )
    msg["Return-Path"] = f"<bounce{index}@example.org>"
    msg["From"] = f"Sender {index} <sender{index}@example.org>"
    msg["To"] = "someone@example.com"
    msg["Reply-To"] = f"reply{index % 97}@example.net"
    msg["Subject"] = f"Message {index}: {rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    msg["Message-ID"] = f"<bench{index}@example.org>"
    body_size = min(size, 60_000) if size > 100_000 else size // 2
    cte = "quoted-printable" if index % 3 == 0 else None
    msg.set_content(_prose(rng, body_size // 2, urls, False), cte=cte)
    msg.add_alternative(_prose(rng, body_size // 2, urls, True), subtype="html", cte=cte)
    rest = size - body_size
    if rest > 2_000:
        msg.make_mixed()
        if index % 5 == 0:
            msg.add_attachment(
                _zip(rng, rng.randrange(1, 6), rest * 3 // 4),
                maintype="application",
                subtype="zip",
                filename=f"archive{index}.zip",
            )
        else:
            msg.add_attachment(
                rng.randbytes(rest * 3 // 4),
                maintype="application",
                subtype="octet-stream",
                filename=f"file{index}.bin",
            )
        if index % 4 == 0:
            calendar = (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:meeting\r\n"
                f"URL:{urls[0]}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )
            msg.add_attachment(calendar, subtype="calendar", filename="invite.ics")
    return msg.as_bytes(policy=SMTP)


def corpus(messages: int = 400, seed: int = 1) -> list[Path]:
    """The corpus's files, built on first use under ``bench/out/mail-corpus-<messages>-<seed>``."""
    folder = OUT / f"mail-corpus-{messages}-{seed}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed)
        for index in range(messages):
            (folder / f"m{index:05d}.eml").write_bytes(message(rng, index))
        done.touch()
    return sorted(folder.glob("*.eml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    paths = corpus(args.messages, args.seed)
    total = sum(path.stat().st_size for path in paths)
    print(f"{len(paths)} messages, {total / 1e6:.1f} MB, in {paths[0].parent}")


if __name__ == "__main__":
    main()
