"""Defaults shared by the client and the CLI, in a module that imports nothing heavy."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_ADDRESS"]

DEFAULT_ADDRESS: Final = "127.0.0.1:2020"
"""The gRPC address of a node started with default settings."""
