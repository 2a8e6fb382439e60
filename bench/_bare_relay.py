"""A bare SMTP relay for bench/gateway.py: aiosmtpd taking each message and handing it to the
next hop with smtplib, scanning nothing; the cost of the SMTP part alone.

    python bench/_bare_relay.py LISTEN_PORT RELAY_PORT
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class Relay:
    def __init__(self, port: int) -> None:
        self.port = port

    def _send(self, envelope: Any) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
            smtp.sendmail(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            await asyncio.to_thread(self._send, envelope)
        except (OSError, smtplib.SMTPException) as exc:
            return f"451 4.4.1 relay failed: {exc}"
        return "250 2.0.0 relayed"


async def main(listen: int, relay: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Relay(relay), hostname="bare", data_size_limit=None), "127.0.0.1", listen
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
