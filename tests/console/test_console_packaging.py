"""The console's templates and static files go into the package (pyproject's package-data):
an installed feedgate that lacked one would answer its pages with a server error."""

from __future__ import annotations

import tomllib
from pathlib import Path

import feedgate

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_and_static_file_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["feedgate"]
    package = Path(feedgate.__file__).parent
    console = package / "web" / "console"
    files = [p for d in ("templates", "static") for p in (console / d).rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in files) and any(p.suffix == ".css" for p in files)
    packaged = {p for pattern in patterns for p in package.glob(pattern)}  # setuptools' globs
    missing = [str(p.relative_to(package)) for p in files if p not in packaged]
    assert missing == [], f"add to [tool.setuptools.package-data] feedgate: {missing}"
