"""The layering of design.md "Layout and layering", checked on the source: arrows point down.

No library package imports ``feedgate.cli`` (the ``feedgate`` command is thin over them, never
the other way), ``feeds`` and ``hub`` never import each other, and ``feedgate.migrate`` reads the
tables from the schema modules, not from the stores that import it to upgrade on open.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import feedgate

PACKAGE = Path(feedgate.__file__).parent
#: The library packages (with the top-level modules beside them, everything but ``cli/``, the
#: top of the arrows).
LIBRARIES = ("feeds", "hub", "web", "mail", "stix", "taxii")


def module_name(path: Path) -> str:
    """``feedgate.feeds.store`` for ``.../feedgate/feeds/store.py`` (a package: its own name)."""
    parts = ["feedgate", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: bytes, module: str, *, package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the text of ``module`` (a
    package's ``__init__`` when ``package``), relative ones resolved; for ``from X import name``
    both X and X.name (``name`` may be a submodule)."""
    here = module if package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """:func:`imports_of` the module at ``path``."""
    yield from imports_of(path.read_bytes(), module_name(path), package=path.name == "__init__.py")


def sources(*packages: str) -> list[Path]:
    """The modules of ``packages`` (``""``: the top-level modules, ``feedgate/*.py``)."""
    return sorted(
        p
        for package in packages
        for p in (PACKAGE.glob("*.py") if package == "" else (PACKAGE / package).rglob("*.py"))
    )


def offences(packages: tuple[str, ...], forbidden: str) -> list[str]:
    """``file:line imports module`` for each import of ``forbidden`` (or a module in it)."""
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for path in sources(*packages)
        for line, target in imported(path)
        if target == forbidden or target.startswith(forbidden + ".")
    ]


def test_the_scan_resolves_the_store_s_own_imports() -> None:
    """The resolver is what the other tests stand on: on a real module, its absolute and
    relative imports come out as absolute names."""
    found = {target for _line, target in imported(PACKAGE / "feeds" / "store.py")}
    assert {"sqlalchemy", "feedgate.migrate", "feedgate.feeds.schema"} <= found
    assert "feedgate.feeds._ingest.Segment" in found  # ``from ._ingest import ... Segment``
    assert module_name(PACKAGE / "feeds" / "__init__.py") == "feedgate.feeds"


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("import feedgate.cli", False),
        ("from feedgate.cli.errors import fail", False),
        ("from feedgate import cli", False),
        ("from .. import cli", False),
        ("from ..cli.progress import PollDisplay", False),
        ("from .cli import main", True),  # in feedgate/__init__.py
    ],
)
def test_every_form_of_importing_cli_is_seen(source: str, package: bool) -> None:
    """Each way a library module could reach ``feedgate.cli`` is reported."""
    module = "feedgate" if package else "feedgate.feeds.probe"
    targets = [target for _line, target in imports_of(source.encode(), module, package=package)]
    assert any(t == "feedgate.cli" or t.startswith("feedgate.cli.") for t in targets), targets


@pytest.mark.parametrize(
    "source", ["import feedgate.client", "from feedgate.feeds import cli_like", "from . import x"]
)
def test_what_is_not_the_command_is_not_reported(source: str) -> None:
    targets = imports_of(source.encode(), "feedgate.feeds.probe")
    assert not [t for _line, t in targets if t == "feedgate.cli" or t.startswith("feedgate.cli.")]


def test_no_library_package_imports_the_command() -> None:
    assert len(sources(*LIBRARIES)) > 50  # the packages are where the scan looks
    assert offences((*LIBRARIES, "", "migrations"), "feedgate.cli") == []


def test_feeds_and_hub_never_import_each_other() -> None:
    assert offences(("feeds",), "feedgate.hub") == []
    assert offences(("hub",), "feedgate.feeds") == []


def test_migrate_imports_neither_store() -> None:
    """In a fresh interpreter: importing migrate and building both schemas' target metadata
    (what autogenerate and the adoption checks use) loads the schema modules, not the stores
    or the scheduler, and neither schema module loads the other package's."""
    code = textwrap.dedent(
        """
        import sys
        import feedgate.migrate as migrate
        assert "feedgate.feeds.schema" not in sys.modules
        migrate.target_metadata("feeds")
        assert not [m for m in sys.modules if m.startswith("feedgate.hub")], sys.modules
        migrate.target_metadata("hub")
        loaded = sorted(m for m in sys.modules if m.startswith("feedgate."))
        print(" ".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"feedgate.migrate", "feedgate.feeds.schema", "feedgate.hub.schema"} <= loaded
    assert not loaded & {"feedgate.feeds.store", "feedgate.feeds.scheduler", "feedgate.hub.store"}
