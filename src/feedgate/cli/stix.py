"""``feedgate stix extract``: normalised observables from STIX/TAXII files, folders or stdin.

Registered on the ``feedgate`` group by :func:`register`. An input that cannot be read is one
``feedgate: error: ...`` line on stderr (the stack trace only with ``feedgate -v``) and the
others are still read; exit status 1 then.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from feedgate.output import FORMATS, make_writer
from feedgate.stix import ReadStats, read_observables
from feedgate.xml import XMLParseError

from .errors import verbose


def _fail_line(what: str, exc: BaseException) -> None:
    """Report one input that cannot be read (the run goes on with the others)."""
    click.echo(f"feedgate: error: {what}: {exc}", err=True)
    if verbose():
        traceback.print_exception(exc, file=sys.stderr)


@click.group()
def stix() -> None:
    """Read STIX 1.x / 2.x and TAXII content."""


#: Inputs smaller than this are read in-process: starting workers would cost more than it saves.
_PARALLEL_FROM = 16 * 1024**2
_INPUT_SUFFIXES = {".xml", ".json", ".stix", ".taxii", ".txt", ""}


def _expand(paths: tuple[str, ...]) -> Iterator[str]:
    """Files as given; folders walked recursively (sorted, so runs are repeatable)."""
    for item in paths:
        if item == "-":
            yield item
            continue
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in _INPUT_SUFFIXES:
                    yield str(child)
        else:
            yield item


class _Progress:
    """A byte-progress bar on stderr, only for large files and only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None

    def wrap(self, name: str, stream: IO[bytes], size: int | None) -> IO[bytes]:
        if not self.enabled or not size or size < 8 * 1024**2:
            return stream
        from rich.progress import Progress

        self._progress = Progress(transient=True, console=_stderr_console())
        self._progress.start()
        task = self._progress.add_task(Path(name).name, total=size)
        progress = self._progress

        class _Counting:
            def read(self, n: int = -1) -> bytes:
                data = stream.read(n)
                progress.advance(task, len(data))
                return data

        return _Counting()  # type: ignore[return-value]

    def done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _summary(stats: ReadStats, files: int, failed: int) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.by_kind.items())) or "none"
    lines = [
        f"{stats.observables} observables from {files} input(s): {kinds}",
        f"  packages {stats.packages}, indicators {stats.indicators}, "
        f"content blocks {stats.content_blocks}",
    ]
    if stats.skipped:
        lines.append(f"  skipped {sum(stats.skipped.values())}:")
        for reason, count in stats.skipped.most_common():
            example = stats.examples.get(reason)
            hint = f" (e.g. {example[0]})" if example else ""
            lines.append(f"    {count} × {reason}{hint}")
    if failed:
        lines.append(f"  errors: {failed} input(s) could not be read")
    return "\n".join(lines)


@stix.command("extract")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="jsonl",
    show_default=True,
    help="Output format on stdout.",
)
@click.option("--quiet", "-q", is_flag=True, help="No summary on stderr.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes for large poll responses [default: the CPU count, at most 4].",
)
@click.argument("paths", nargs=-1, required=True)
def stix_extract(fmt: str, quiet: bool, workers: int | None, paths: tuple[str, ...]) -> None:
    """Extract normalised observables from STIX/TAXII files, folders or - (stdin).

    Reads STIX 1.x XML, CybOX, TAXII 1.x Poll_Response, concatenated packages (what taxii-poll
    prints) and STIX 2.x JSON. Values that fail normalisation are skipped and counted; an input
    that cannot be read is reported on stderr and the others are still processed (exit 1).
    """
    out = sys.stdout
    write = make_writer(fmt, out)
    stats = ReadStats()
    progress = _Progress(sys.stderr.isatty())
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    files = failed = 0
    try:
        for name in _expand(paths):
            files += 1
            if not _extract_one(name, write, stats, progress, workers):
                failed += 1
        out.flush()
    except BrokenPipeError:
        # Whoever reads our output (`| head`) has had enough: stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not quiet:
        click.echo(_summary(stats, files, failed), err=True)
    if failed:
        sys.exit(1)


def _extract_one(
    name: str, write: Any, stats: ReadStats, progress: _Progress, workers: int
) -> bool:
    """Extract one input; report a failure in one line and return False."""
    try:
        if name == "-":
            stream: IO[bytes] = sys.stdin.buffer
            size = None
        else:
            stream = open(name, "rb")  # noqa: SIM115 - closed in finally
            size = Path(name).stat().st_size
    except OSError as exc:
        _fail_line(name, OSError(exc.strerror or str(exc)))
        return False
    try:
        use = workers if size and size >= _PARALLEL_FROM else 1
        source = progress.wrap(name, stream, size)
        for obs in read_observables(source, stats=stats, workers=use):
            write(obs)
        return True
    except (XMLParseError, ValueError) as exc:
        _fail_line(name, exc)
        return False
    finally:
        progress.done()
        if stream is not sys.stdin.buffer:
            stream.close()


def register(group: click.Group) -> None:
    """Add ``stix`` (``stix extract``) to the ``feedgate`` command."""
    group.add_command(stix)
