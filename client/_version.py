"""The installed pandanode's version (for ``pandanode --version``)."""

from __future__ import annotations

__all__ = ["version"]


def version() -> str:
    """The version of the installed ``pandanode`` distribution; ``0+unknown`` when not installed.

    Read from the package metadata on each call (it costs a few milliseconds, so only
    ``--version`` pays for it).
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("pandanode")
    except PackageNotFoundError:
        return "0+unknown"
