"""The threat-feed log: one row per event in the database and one line in a rotating file.

Lines are in the gateway style::

    2026-11-28T03:40:12Z Info: source "otx": segment 2026-11-01T00:00Z–2026-11-02T00:00Z: ...

The caller writes the message; :class:`ThreatFeedLog` adds the time, the level word and the
``source "name": `` prefix. Secrets never belong in a message, and callers never pass them; as a
last defence, ``password=...``-like text and credentials in URLs are masked before anything is
written, and control characters are shown escaped so a feed's text cannot forge log lines.

Several processes may write one file; :class:`logging.handlers.RotatingFileHandler` does not
coordinate rotation between processes, so a rotation may lose or split a line then (the database
rows are the record; the file is for tailing).
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from feedgate.db import data_dir
from feedgate.redaction import hide_url_credentials

if TYPE_CHECKING:
    from .store import FeedStore, LogEntry

__all__ = [
    "ThreatFeedLog",
    "default_log_path",
    "format_line",
    "read_figures",
    "redact",
    "skipped_figures",
]

#: Rotation: files of at most this size, this many old ones kept.
MAX_BYTES: Final = 10 * 1024**2
BACKUPS: Final = 5

_WORDS: Final = {"info": "Info", "warning": "Warning", "error": "Error"}
_LEVELNO: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_SECRET_ASSIGNMENT: Final = re.compile(
    r"""(?ix)
    \b((?:key[_-]?)?pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|
       authorization|x-otx-api-key)
    (\s*[=:]\s*)
    (?:"[^"]*"|'[^']*'|(?:basic|bearer)\s+\S+|[^\s,;&]+)
    """
)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


_LOGGER: Final = logging.getLogger("feedgate.threat_feed")


def _cannot_write(path: Path | str, exc: BaseException | None) -> None:
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc or "unknown error")
    _LOGGER.warning(
        "feedgate: warning: cannot write the threat-feed log file %s (%s): the log goes on in "
        "the database only (feedgate log); make its directory writable or set XDG_DATA_HOME",
        path,
        reason,
    )


class _FileHandler(logging.handlers.RotatingFileHandler):
    """The log file: a failure to write it is reported once, then the file is left alone
    (the standard handler prints a stack trace for every line it cannot write)."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            _cannot_write(self.baseFilename, sys.exc_info()[1])


def default_log_path() -> Path:
    """``<data dir>/threat-feed.log`` (``$XDG_DATA_HOME/feedgate/threat-feed.log``)."""
    return data_dir() / "threat-feed.log"


def redact(message: str) -> str:
    """``message`` with ``password=...``-like values and URL passwords masked, and control
    characters escaped (one log row is one line)."""
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}***", message)
    text = hide_url_credentials(text)  # a feed's user name may be its API key (OTX)
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


def read_figures(read: int, new: int, updated: int) -> str:
    """What a segment (or a poll) read and stored, in words whose numbers add up:
    ``2891 observables read (13 repeats within a segment), 2833 new, 45 updated``.

    A value that comes twice in one segment (two pulses name one IP) is stored, and counted as
    new or updated, once; the repeats are said, so that read = repeats + new + updated.
    (Across segments a value is counted in each: by the second it is stored, so "updated".)
    """
    repeats = read - new - updated
    said = f" ({repeats} repeat{'' if repeats == 1 else 's'} within a segment)" if repeats else ""
    return f"{read} observables read{said}, {new} new, {updated} updated"


#: How many reasons a skipped figure names (the most common first); the rest are counted.
SKIP_REASONS_SHOWN: Final = 3


def skipped_figures(skipped: Mapping[str, int]) -> str:
    """What a segment (or a poll) left out of a feed, and why, for the end of its line:
    ``; 1 skipped: 1 × invalid domain value`` (empty when nothing was). The reasons are the
    reader's (:class:`feedgate.stix.ReadStats`), as ``feedgate stix extract`` says them, the
    most common first; a value left out is not among the observables read."""
    counts = sorted(((n, reason) for reason, n in skipped.items() if n > 0), key=_most_first)
    if not counts:
        return ""
    said = [f"{n} × {reason}" for n, reason in counts[:SKIP_REASONS_SHOWN]]
    rest = len(counts) - SKIP_REASONS_SHOWN
    if rest > 0:
        said.append(f"{rest} more reason{'' if rest == 1 else 's'}")
    return f"; {sum(n for n, _ in counts)} skipped: {'; '.join(said)}"


def _most_first(item: tuple[int, str]) -> tuple[int, str]:
    return -item[0], item[1]


def stamp(moment: datetime) -> str:
    """``2026-11-28T03:40:12Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_line(at: datetime, level: str, source: str | None, message: str) -> str:
    """One log line in the gateway style (no newline)."""
    word = _WORDS.get(level, level.capitalize())
    prefix = f'source "{redact(source)}": ' if source else ""
    return f"{stamp(at)} {word}: {prefix}{redact(message)}"


def format_entry(entry: LogEntry) -> str:
    """A stored log row as a line."""
    return format_line(entry.at, entry.level, entry.source, entry.message)


class ThreatFeedLog:
    """Writes threat-feed events to the store and to a rotating file.

    ``path=None`` means :func:`default_log_path`; pass ``write_file=False`` for the database
    only. A file that cannot be written (nor its directory made) never stops a poll: the row is
    still stored, the failure is reported once through the standard :mod:`logging` machinery
    (one line on stderr when nothing else is set up) and :attr:`path` is None when the
    directory cannot be made.
    """

    def __init__(
        self, store: FeedStore, path: Path | None = None, *, write_file: bool = True
    ) -> None:
        self.store = store
        self.path = (path or default_log_path()) if write_file else None
        self._handler: logging.handlers.RotatingFileHandler | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                _cannot_write(self.path, exc)
                self.path = None
                return
            self._handler = _FileHandler(
                self.path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True
            )
            self._handler.setFormatter(logging.Formatter("%(message)s"))

    def info(self, source: str | None, message: str) -> int:
        return self.write("info", source, message)

    def warning(self, source: str | None, message: str) -> int:
        return self.write("warning", source, message)

    def error(self, source: str | None, message: str) -> int:
        return self.write("error", source, message)

    def write(self, level: str, source: str | None, message: str) -> int:
        """Store and print one event; the row's id."""
        at = datetime.now(UTC).replace(microsecond=0)
        clean = redact(message)
        row = self.store.add_log(source, level, clean, at=at)
        if self._handler is not None:
            line = format_line(at, level, source, clean)
            record = logging.makeLogRecord(
                {
                    "name": "feedgate.threat_feed",
                    "levelno": _LEVELNO[level],
                    "levelname": logging.getLevelName(_LEVELNO[level]),
                    "msg": line,
                }
            )
            self._handler.handle(record)
        return row

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            self._handler = None

    def __enter__(self) -> ThreatFeedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
