"""The CLI's exit codes and its usage error (a module that imports nothing heavy)."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_UNREACHABLE", "EXIT_USAGE", "UsageError"]

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3


class UsageError(Exception):
    """Bad input found by the CLI itself (exit code 2)."""
