"""The source layout: the import names ``pandanode.*`` are the top-level folders, through src/.

src/pandanode/ holds one relative symlink per package (``core -> ../../core``, …), so the
editable install is a plain path entry that mypy, pyright and editors follow.
"""

from __future__ import annotations

import ast
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


LIBRARY = ("core", "services", "client")
LONG_MODULE_LINES = 500


def test_a_library_module_over_500_lines_says_in_its_docstring_why_it_stays_one_module() -> None:
    unexplained = []
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") <= LONG_MODULE_LINES:
                continue
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "stays one module" not in docstring and "500 lines" not in docstring:
                unexplained.append(str(path.relative_to(ROOT)))
    assert unexplained == []


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_only_the_runtime_imports_nats_and_rocksdict_and_only_the_cli_imports_the_client() -> None:
    found = []
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for name in _imports(path):
                transport = name.split(".")[0] in ("nats", "rocksdict")
                if transport and not relative.startswith("services/runtime/"):
                    found.append(f"{relative}: {name}")
                client = name.startswith("pandanode.client")
                if client and relative.startswith("services/") and relative != "services/cli.py":
                    found.append(f"{relative}: {name}")
    assert found == []
