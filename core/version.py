"""The version of pandanode, from one place: the installed package's metadata.

A source tree that is not installed (no metadata) reports :data:`FALLBACK_VERSION`.
"""

from __future__ import annotations

import functools
from importlib import metadata

__all__ = ["FALLBACK_VERSION", "version"]

FALLBACK_VERSION = "0.0.0+unknown"


@functools.cache
def version() -> str:
    """The installed pandanode's version (``pyproject.toml``), e.g. ``0.1.0``."""
    try:
        return metadata.version("pandanode")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION
