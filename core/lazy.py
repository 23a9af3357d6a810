"""Attributes of a package imported on first use (PEP 562), so importing the package is cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, module_of: Mapping[str, str], exported: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose exports load on first use.

    Args:
        package: The package's ``__name__`` (relative module names resolve against it).
        module_of: Each exported name → the module defining it (``.entry`` or absolute).
        exported: The package's ``__all__``.

    Returns:
        ``(__getattr__, __dir__)``; assign both at the package's top level. A name, once
        loaded, is stored in the package, so the next access is an ordinary attribute.
    """
    namespace = vars(importlib.import_module(package))

    def getattr_(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exported})

    return getattr_, dir_
