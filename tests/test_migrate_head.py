"""``feedgate.migrate.HEADS`` is Alembic's head, and an open at head does without Alembic."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from feedgate import migrate
from feedgate.migrate import HEADS, Schema


@pytest.mark.parametrize("which", migrate.SCHEMAS)
def test_heads_constant_is_alembics_head(which: Schema) -> None:
    """When a revision is added, HEADS must name it, or opens would skip the upgrade."""
    migrate._script.cache_clear()  # read the script directory as it is now
    script = migrate._script(which)
    heads = script.get_heads()
    assert heads == [HEADS[which]], f"set feedgate.migrate.HEADS[{which!r}] to {heads}"
    assert migrate.head(which) == HEADS[which]


_OPEN = textwrap.dedent(
    """
    import sys
    from feedgate.db import engine
    from feedgate.feeds.store import FeedStore
    from feedgate.hub.store import HubStore
    e = engine(sys.argv[1])
    FeedStore(e).close()
    HubStore(e).close()
    print(sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic.")))
    """
)


def test_opening_stores_at_head_imports_no_alembic(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")

    def open_() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _OPEN, db], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert open_() != "[]"  # a fresh database is upgraded, through Alembic
    assert open_() == "[]"  # at head: one read, no Alembic
