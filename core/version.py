"""The version of pandanode, from one place: the installed package's metadata.

A source tree that is not installed (no metadata) reports :data:`FALLBACK_VERSION`.
"""

from __future__ import annotations

import functools
import os
import sys

__all__ = ["FALLBACK_VERSION", "version"]

FALLBACK_VERSION = "0.0.0+unknown"


@functools.cache
def version() -> str:
    """The installed pandanode's version (``pyproject.toml``), e.g. ``0.1.0``."""
    found = _version_from_dist_info()
    if found is not None:
        return found
    from importlib import metadata

    try:
        return metadata.version("pandanode")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


def _version_from_dist_info() -> str | None:
    """The ``Version:`` of the first ``pandanode-*.dist-info`` on ``sys.path``, or None.

    What :func:`importlib.metadata.version` finds for an ordinary (or editable) install, read
    without importing ``importlib.metadata`` and its e-mail parser: ``pandanode --version`` is
    a client command that must start fast. Anything else (an egg, a zip) is left to it.
    """
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("pandanode") and name.endswith(".egg-info"):
                return None  # importlib.metadata reads those
            if name.startswith("pandanode-") and name.endswith(".dist-info"):
                try:
                    with open(os.path.join(entry, name, "METADATA"), encoding="utf-8") as lines:
                        for line in lines:
                            if line.startswith("Version:"):
                                return line.removeprefix("Version:").strip()
                            if not line.strip():  # the headers end here
                                break
                except OSError:
                    pass
                return None
    return None
