"""`asgi_server.serve` stops on SIGINT/SIGTERM from the moment it says it is ready.

CI found a `feedgate up` that, stopped with Ctrl-C just after printing "API:", served for ever:
the signal became a KeyboardInterrupt inside an import's clean-up callback, which Python prints
as "Exception ignored" and drops. Now the signal only asks the server to stop. The test sends
it from inside ``ready`` (the very window), in a real process: under the old handling the line
after the kill never ran.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from feedgate.asgi_server import bind, serve

    async def app(scope, receive, send):
        raise AssertionError("no request is made")

    def ready():
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        print("ready ran to its end", flush=True)

    serve(app, bind(), ready=ready)
    print("serve returned", flush=True)
    """
)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_ready_stops_the_server_without_interrupting(signame: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, signame],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ready ran to its end", "serve returned"]
    assert "KeyboardInterrupt" not in done.stderr and "Traceback" not in done.stderr


def test_the_callers_handlers_are_back_afterwards() -> None:
    script = CHILD.replace(
        "serve(app, bind(), ready=ready)",
        "before = signal.getsignal(signal.SIGINT)\n"
        "serve(app, bind(), ready=ready)\n"
        "print('restored', signal.getsignal(signal.SIGINT) is before, flush=True)",
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "SIGINT"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ready ran to its end", "restored True", "serve returned"]
