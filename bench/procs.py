"""Processes under measurement: the node (``pandanode up``), the echo server, and /proc readings.

The node runs as its own processes, as a user runs it, so the benchmark client and the node never
share a GIL. ``pandanode up`` is a supervisor with one child process per service next to its
nats-server; CPU time and peak memory of "the node" are read from ``/proc`` for the supervisor
and its service processes together, the nats-server's apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.services.runtime.nats_server import (
    NATS_CREDENTIALS_FILE,
    EmbeddedNats,
    dies_with_parent_prefix,
    free_port,
    read_credentials,
    reported_port,
    with_credentials,
)

__all__ = [
    "MIN_CPU_SECONDS",
    "ROOT",
    "CpuTimes",
    "EchoProcess",
    "NodeProcess",
    "children_of",
    "cpu_seconds",
    "dir_bytes",
    "free_port",
    "peak_rss_bytes",
]

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the bench package's parent)."""

_TICKS = os.sysconf("SC_CLK_TCK")

MIN_CPU_SECONDS = 5 / _TICKS
"""Below this, a CPU time read from ``/proc`` (whole clock ticks) is too coarse to report."""


def _stat_fields(pid: int) -> list[str]:
    """Fields 3… of ``/proc/<pid>/stat`` (after the command name, which may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``utime + stime``, all its threads).

    Returns 0 for a process that is gone.
    """
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == pid:
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size of a process (``VmHWM``), in bytes; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (apparent sizes), 0 when it does not exist."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / name).stat().st_size
    return total


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """CPU seconds used so far by the node process and by its nats-server child.

    Attributes:
        node: The node: the process started (``up``'s supervisor, or ``serve ingest``) and
            the service processes of ``up``.
        nats: Its nats-server.
        parts: ``node`` by process: ``supervisor`` (or ``ingest`` for ``serve ingest``) and
            each service of ``up`` by name.
    """

    node: float
    nats: float
    parts: Mapping[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Node and nats-server together."""
        return self.node + self.nats

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        parts = {name: used - other.parts.get(name, 0.0) for name, used in self.parts.items()}
        return CpuTimes(self.node - other.node, self.nats - other.nats, parts)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


class NodeProcess:
    """``python -m pandanode.services.cli up`` on a loopback port, with its own data directory.

    Args:
        data_dir: The node's data directory (created by the node).
        log_file: Where the node's stdout and stderr go.
        mode: ``up``: the all-in-one node (``pandanode up``: embedded nats-server and one
            process per service behind the public address); ``ingest``: the ingest service
            alone (``pandanode serve ingest``) with a nats-server started here, as in a
            distributed deployment.
        args: More flags of the command (e.g. ``--bootstrap-peers``).
        env: More environment variables of the node (settings as ``PANDANODE_…``).

    Attributes:
        address: The node's public gRPC address.
        endpoints: The address of each service's own process, by service full name, as the
            node answers ``NodeService/GetEndpoints`` (empty for ``serve ingest``).
        nats_pid: The process id of its embedded nats-server, once started.
        nats_url: The URL of that server, once started.
        published: Entries the scenario stored on this node (for per-entry figures).
    """

    def __init__(
        self,
        data_dir: Path,
        log_file: Path,
        mode: str = "up",
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        if mode not in ("up", "ingest"):
            raise ValueError(f"unknown node mode {mode!r}")
        self.data_dir = data_dir
        self.log_file = log_file
        self.mode = mode
        self.args = tuple(args)
        self.env = dict(env or {})
        self._nats: EmbeddedNats | None = None
        self.address = f"127.0.0.1:{free_port()}"
        # The gateway's HTTP address (``up`` mode): a free port, not the default 2021.
        self.http_address = f"127.0.0.1:{free_port()}"
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self.nats_pid: int | None = None
        self.nats_url = ""
        self.published = 0
        self.endpoints: dict[str, str] = {}
        self.service_pids: dict[str, int] = {}

    @property
    def ingest_address(self) -> str:
        """Where a client publishes: the ingest process directly, as the Python client does."""
        return self.endpoints.get(INGEST_SERVICE, self.address)

    @property
    def pid(self) -> int:
        """The node's process id.

        Raises:
            RuntimeError: the node is not running.
        """
        if self._process is None:
            raise RuntimeError("the node is not running")
        return self._process.pid

    async def start(self, timeout: float = 60.0) -> None:
        """Start the node and wait until its health service reports SERVING.

        Raises:
            RuntimeError: the node exited or did not become ready within ``timeout`` seconds.
        """
        self._log = self.log_file.open("wb")
        if self.mode == "up":
            # No LAN discovery: a benchmark node must not find (and count events of) others.
            command = ["up", "--no-lan-discovery", "--http-listen", self.http_address]
        else:
            self._nats = EmbeddedNats(store_dir=self.data_dir / "nats")
            await self._nats.start()
            command = ["serve", "ingest", "--nats", self._nats.url]
        # A bench killed half-way must not leave its node running (and measured by the next).
        self._process = await asyncio.create_subprocess_exec(
            *dies_with_parent_prefix(),
            sys.executable,
            "-m",
            "pandanode.services.cli",
            *command,
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.address,
            "--log-level",
            "WARNING",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **self.env} if self.env else None,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )
        await self._wait_serving(timeout)
        self.endpoints = await _endpoints(self.address)
        if self._nats is not None:
            self.nats_pid, self.nats_url = self._nats.pid, self._nats.url
            return
        for child in children_of(self.pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if any(part.endswith(b"nats-server") for part in cmdline):
                self.nats_pid = child
                port = cmdline[cmdline.index(b"--port") + 1].decode()
                if port == "-1":  # a port the system picked: nats-server's ports file names it
                    port = str(reported_port(self.data_dir / "nats", child))
                # `up`'s embedded server takes only the user of the data directory's
                # credentials file.
                user, password = read_credentials(self.data_dir / NATS_CREDENTIALS_FILE)
                self.nats_url = with_credentials(f"nats://127.0.0.1:{port}", user, password)
            elif b"serve" in cmdline:
                self.service_pids[cmdline[cmdline.index(b"serve") + 1].decode()] = child

    async def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self._process is None or self._process.returncode is not None:
                    raise RuntimeError(f"the node exited at start:\n{_tail(self.log_file)}")
                try:
                    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the node was not SERVING after {timeout} s:\n{_tail(self.log_file)}"
                    )
                await asyncio.sleep(0.05)  # poll: the node is starting

    async def services(self) -> list[str]:
        """The gRPC services the node serves, as server reflection lists them."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            response = await call.read()
            await call.done_writing()
            assert isinstance(response, reflection_pb2.ServerReflectionResponse)
            return [s.name for s in response.list_services_response.service]

    def cpu(self) -> CpuTimes:
        """CPU seconds used so far by the node (supervisor + services) and its nats-server."""
        nats = cpu_seconds(self.nats_pid) if self.nats_pid is not None else 0.0
        first = "supervisor" if self.mode == "up" else "ingest"
        parts = {first: cpu_seconds(self.pid)}
        parts.update((name, cpu_seconds(pid)) for name, pid in self.service_pids.items())
        return CpuTimes(sum(parts.values()), nats, parts)

    def peak_rss(self) -> tuple[int, int]:
        """Peak RSS in bytes of the node (supervisor + services, summed) and of its nats-server."""
        nats = peak_rss_bytes(self.nats_pid) if self.nats_pid is not None else 0
        node = sum(peak_rss_bytes(pid) for pid in [self.pid, *self.service_pids.values()])
        return node, nats

    def log_tail(self) -> str:
        """The end of the node's output, for error messages."""
        return _tail(self.log_file)

    async def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the node (SIGTERM: it drains), killing it after ``timeout``; its exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                code = await process.wait()
        if self._nats is not None:
            await self._nats.stop()
            self._nats = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


INGEST_SERVICE = "pandanode.ingest.v1.IngestService"


async def _endpoints(address: str) -> dict[str, str]:
    """The node's service endpoints (``NodeService/GetEndpoints``); empty if not implemented."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await node_pb2_grpc.NodeServiceStub(channel).GetEndpoints(
                node_pb2.GetEndpointsRequest(), timeout=10
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return {}
            raise
        return dict(response.endpoints)


class EchoProcess:
    """The raw gRPC echo server of :mod:`bench.echo`, in its own process."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self.address = ""

    @property
    def pid(self) -> int:
        """The echo server's process id.

        Raises:
            RuntimeError: the server is not running.
        """
        if self._process is None:
            raise RuntimeError("the echo server is not running")
        return self._process.pid

    async def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait for the port it prints.

        Raises:
            RuntimeError: it exited or printed no port within ``timeout`` seconds.
        """
        self._process = await asyncio.create_subprocess_exec(
            *dies_with_parent_prefix(),
            sys.executable,
            "-m",
            "bench.echo",
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if not line.strip().isdigit():
            await self.stop()
            raise RuntimeError(f"the echo server did not start (it printed {line!r})")
        self.address = f"127.0.0.1:{int(line)}"

    def cpu(self) -> float:
        """CPU seconds used so far by the echo server."""
        return cpu_seconds(self.pid)

    async def stop(self) -> None:
        """Stop the server."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
