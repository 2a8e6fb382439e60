"""What ``feedgate poll`` shows while a poll runs: each threat-feed log line on stdout as it is
written, and, when stderr is a terminal, one status line there that is redrawn in place
(segment, blocks, observables, rate). Piped or redirected, stderr gets no status line: the
log lines alone, one per line, as in a file.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

import click

from feedgate.feeds.poller import PollProgress

#: The status line is redrawn at most this often (seconds): a batch is stored many times a second.
REDRAW: float = 0.1


def describe(progress: PollProgress) -> str:
    """The status line: ``otx: segment 3/9, 12 blocks, 4,800 observables, 1,250/s``."""
    return (
        f"{progress.source}: segment {progress.segment}/{progress.segments},"
        f" {progress.blocks:,} blocks, {progress.read:,} observables, {progress.rate:,.0f}/s"
    )


class PollDisplay:
    """Log lines to stdout, and a status line on ``stream`` (stderr) when it is a terminal."""

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream or sys.stderr
        self.live = self._stream.isatty()
        self._clock = clock
        self._status = ""
        self._drawn = float("-inf")

    def line(self, text: str) -> None:
        """Print a log line, above the status line."""
        self._erase()
        click.echo(text)
        self._draw()

    def progress(self, progress: PollProgress) -> None:
        if not self.live:
            return
        self._status = describe(progress)
        if self._clock() - self._drawn >= REDRAW:
            self._erase()
            self._draw()

    def close(self) -> None:
        """Take the status line away (the poll ended)."""
        self._erase()
        self._status = ""

    def _draw(self) -> None:
        if self.live and self._status:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write(self._status[:width])
            self._stream.flush()
            self._drawn = self._clock()

    def _erase(self) -> None:
        if self.live and self._status:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
