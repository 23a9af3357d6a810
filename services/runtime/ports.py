"""Ports for other processes: picked here (:func:`free_port`) or reported by the process.

A port picked here is free only until someone else binds it, so a process that can bind port 0
and report the port it got (nats-server, the node's servers) should; the tests use this where a
port must be known before the process starts (a public address, a peer's address, a config).
"""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

__all__ = ["PORT_RANGE_VARIABLE", "free_port", "ports_file_dir", "reported_port"]

PORT_RANGE_VARIABLE = "PANDANODE_PORT_RANGE"
"""``first-last``: the ports :func:`free_port` hands out (the tests give each xdist worker its
own, below the system's ephemeral ports, so no other process picks one of them)."""

# The next port of the range to try, per range (a process steps through its range).
_next_in_range: dict[tuple[int, int], int] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    The port is free only until someone else binds it: a port handed to another process may
    be taken before that process binds it. Where :data:`PORT_RANGE_VARIABLE` is set, the port
    comes from that range (each process starts at a random point and steps through it);
    otherwise the system picks it.
    """
    bounds = os.environ.get(PORT_RANGE_VARIABLE, "")
    if not bounds:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    first, _, last = bounds.partition("-")
    low, high = int(first), int(last)
    size = high - low + 1
    start = _next_in_range.get((low, high), low + random.randrange(size))
    for step in range(size):
        port = low + (start - low + step) % size
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _next_in_range[(low, high)] = low + (port - low + 1) % size
        return port
    raise OSError(f"no free port in {PORT_RANGE_VARIABLE}={bounds}")


def ports_file_dir(store_dir: Path) -> Path:
    """Where nats-server with store ``store_dir``, started on port 0, writes its ports file."""
    return store_dir / "ports"


def reported_port(store_dir: Path, pid: int) -> int:
    """The client port nats-server ``pid`` bound, started on port 0 with store ``store_dir``.

    Returns:
        The port its ports file names, or 0 while there is no such file (yet).
    """
    # nats-server names the file <executable>_<pid>.ports and writes it once it listens.
    for path in ports_file_dir(store_dir).glob(f"*_{pid}.ports"):
        try:
            urls = json.loads(path.read_text())["nats"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0  # being written
        if urls:
            return int(str(urls[0]).rpartition(":")[2])
    return 0
