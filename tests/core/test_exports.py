"""The packages' exports load on first use (start-up time) and stay what their modules define."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(program: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize("package", ["pandanode.core", "pandanode.client"])
def test_every_export_is_its_modules_object_even_after_every_submodule_was_imported(
    package: str,
) -> None:
    # In a fresh interpreter, every submodule first, as a program may import them before it
    # asks the package: an export named like a submodule must not be shadowed by it.
    shadowed = _run(
        "import importlib, pkgutil, types\n"
        f"package = importlib.import_module({package!r})\n"
        "for found in pkgutil.iter_modules(package.__path__):\n"
        "    importlib.import_module(f'{package.__name__}.{found.name}')\n"
        "exports = [getattr(package, name) for name in package.__all__]\n"
        "print([e.__name__ for e in exports if isinstance(e, types.ModuleType)])\n"
    )
    assert shadowed == "[]"


def test_importing_pandanode_core_loads_only_its_eager_modules() -> None:
    loaded = _run(
        "import sys, pandanode.core\n"
        "print(sorted(m for m in sys.modules if m.startswith('pandanode.core.')))\n"
    )
    assert loaded == "['pandanode.core.lazy', 'pandanode.core.lipmaa']"
