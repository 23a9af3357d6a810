"""The source layout: the import names ``pandanode.*`` are the top-level folders, through src/.

src/pandanode/ holds one relative symlink per package (``core -> ../../core``, …), so the
editable install is a plain path entry that mypy, pyright and editors follow.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pandanode"


def _packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = config["tool"]["setuptools"]["packages"]
    return packages


def test_every_package_listed_in_pyproject_resolves_through_src_pandanode() -> None:
    packages = _packages()
    assert "pandanode.core" in packages and "pandanode.ingest.v1" in packages
    for name in packages:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not importable"
        locations = list(spec.submodule_search_locations or [])
        assert locations, f"{name} is not a package"
        expected = SRC.joinpath(*name.split(".")[1:])
        assert Path(locations[0]) == expected, f"{name} resolves to {locations[0]}, not {expected}"


def test_src_pandanode_links_each_top_level_package_relatively() -> None:
    links = {path.name: os.readlink(path) for path in SRC.iterdir()}
    protos = {p.name for p in (ROOT / "protos" / "pandanode").iterdir() if p.is_dir()}
    assert links == {
        "core": "../../core",
        "services": "../../services",
        "client": "../../client",
        **{name: f"../../protos/pandanode/{name}" for name in protos},
    }
    top_level = {name.split(".")[1] for name in _packages() if name.count(".") >= 1}
    assert top_level == set(links)
