"""The installed pandanode's version (for ``pandanode --version``)."""

from __future__ import annotations

__all__ = ["version"]


def version() -> str:
    """The version of the installed ``pandanode`` distribution (one source: ``core.version``)."""
    from pandanode.core.version import version as installed_version

    return installed_version()
