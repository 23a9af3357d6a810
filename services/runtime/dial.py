"""How a service opens gRPC channels to the other services it calls.

A :data:`Dial` is handed down by the composition root (the CLI), so a service never imports the
client library: ``pandanode serve gateway`` dials with the client's endpoint channel, which calls
each service's process directly; anything else dials plainly (:func:`insecure_dial`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import grpc
import grpc.aio

__all__ = ["Dial", "insecure_dial"]

Dial: TypeAlias = Callable[[str, Sequence[tuple[str, Any]]], grpc.aio.Channel]
"""Opens a channel to a gRPC ``host:port`` with channel options."""


def insecure_dial(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A plain channel to ``address``."""
    return grpc.aio.insecure_channel(address, options=list(options))
