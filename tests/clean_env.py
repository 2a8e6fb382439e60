"""The environment a test gives a feedgate process it starts.

Without the runner's own ``FEEDGATE_*`` settings (a developer's ``FEEDGATE_DB`` must never
point a test's command at a real database), but with ``FEEDGATE_CLOCK_OFFSET``: under ``make
test-future`` the clock shim moves the clock of every process by it, and a command that ran
without it would live a year behind the test that made its data. One rule, one place: every
test that spawns ``feedgate`` takes its environment from here.
"""

from __future__ import annotations

import os

#: The one FEEDGATE_ variable a spawned command keeps (tests/tools/clock_offset.c).
KEPT = "FEEDGATE_CLOCK_OFFSET"


def clean_env(**settings: str) -> dict[str, str]:
    """``os.environ`` without ``FEEDGATE_*`` (but :data:`KEPT`), then ``settings`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDGATE_") or k == KEPT}
    env.update(settings)
    return env
