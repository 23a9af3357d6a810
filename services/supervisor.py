"""``pandanode up``: NATS and one supervised OS process per service, behind one address.

The supervisor locks the data directory first, binds the public address, starts the embedded
NATS server, then runs each service as a child process (``pandanode serve <service>``, the
same process a distributed deployment runs) on the public host with a port of its own. It
watches every child and NATS: a part that dies is restarted with back-off (health says
NOT_SERVING meanwhile); a part that keeps dying ends the node with a non-zero exit. SIGTERM /
Ctrl-C drains the children (SIGTERM, then SIGKILL after a grace) and exits 0.

The public address serves a byte-level pass-through to the children, aggregated health,
server reflection of every service, and ``NodeService/GetEndpoints`` so clients can dial the
children directly.

It stays one module: the start order, the restarts, the health it reports and the drain all work
on the state of the one :class:`Supervisor` (its children and NATS), and the pass-through
servicer is a few lines over that same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.registry import CollectorRegistry

from pandanode.core.version import version
from pandanode.node.v1 import node_pb2, node_pb2_grpc

from .discovery.identity import NODE_KEY_FILE, load_or_create_node_key
from .node import SERVICES
from .parts import PARTS
from .runtime.addresses import split_host_port
from .runtime.guard import guarded_server
from .runtime.logs import json_logging
from .runtime.metrics import ChildrenCollector, MetricsServer, metrics_enabled, serve_metrics
from .runtime.nats_server import (
    NATS_CREDENTIALS_FILE,
    EmbeddedNats,
    JetStreamWatch,
    NatsServerError,
    dies_with_parent_prefix,
    service_credentials_file,
)
from .runtime.peers import advertised
from .runtime.proxy import PassThrough, method_kinds
from .runtime.rocks import free_bytes
from .runtime.server import add_reflection
from .runtime.service import EXIT_RESTART
from .runtime.settings import Settings, SettingsError
from .runtime.tls import bind, tls_enabled

__all__ = [
    "DEFAULT_METRICS_LISTEN",
    "LOCK_FILE",
    "DataDirInUseError",
    "Supervisor",
    "SupervisorError",
    "lock_data_dir",
    "settings_environment",
]

log = logging.getLogger(__name__)

LOCK_FILE = "pandanode.lock"
NODE_SERVICE = node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name

# A part that dies this often within RESTART_WINDOW seconds is given up on.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
# Seconds a child has to report its address and become SERVING.
START_TIMEOUT = 60.0
# Seconds a child has to drain after SIGTERM before it is killed.
DRAIN_GRACE = 20.0
# Seconds between two looks at NATS and at the children's health.
WATCH_INTERVAL = 0.25
# Seconds a child has to answer a health check before it is reported NOT_SERVING (a busy
# child's event loop may answer late; a hung one never does).
CHECK_TIMEOUT = 5.0

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_READY_LINE = "pandanode listening on "
_METRICS_MARK = "; metrics on "

# Where `pandanode up` serves the merged metrics of its children when metrics_listen is not set
# (if the port is free: a second node on the host runs without, rather than not at all).
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"


class SupervisorError(RuntimeError):
    """The node cannot start or cannot keep running; the message is one line for the user."""


class DataDirInUseError(SupervisorError):
    """Another pandanode holds the data directory."""


def lock_data_dir(data_dir: Path) -> int:
    """Take the data directory's lock (``pandanode.lock``); returns the open file descriptor.

    The lock is held until the descriptor is closed or the process dies (also by kill -9).

    Raises:
        DataDirInUseError: another process holds it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirInUseError(
            f"data directory {data_dir} is in use by another pandanode (pid {owner})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def settings_environment(settings: Settings) -> dict[str, str]:
    """The settings as ``PANDANODE_*`` environment variables (what a child is started with)."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[f"PANDANODE_{f.name.upper()}"] = text
    return env


@dataclass(eq=False)
class _Child:
    """One service's process and what the supervisor knows about it."""

    name: str
    grpc_service: str
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    address: str = ""
    channel: grpc.aio.Channel | None = None
    serving: bool = False
    healthy: bool = True
    crashes: list[float] = field(default_factory=list)
    planned_restart: bool = False
    http_address: str = ""
    metrics_address: str = ""


class Supervisor:
    """Runs ``pandanode up``.

    Args:
        settings: The node's settings (``listen`` is the public address).
        services: The services to run as child processes.
    """

    def __init__(self, settings: Settings, services: Sequence[str] = SERVICES) -> None:
        self.settings = settings
        self.children = [_Child(name, PARTS[name].grpc_service) for name in services]
        self.address = ""
        self.nats_url = settings.nats_url
        self._host, _ = split_host_port(settings.listen, allow_port_zero=True)
        self._tls = tls_enabled(settings)
        # With TLS on the public address, the children listen on loopback, plaintext: nothing
        # outside the machine reaches them past the TLS listener.
        self._child_host = "127.0.0.1" if self._tls else self._host
        # Where the children reach the others through the pass-through (plaintext): the public
        # address, or with TLS a loopback port of the same server.
        self.internal_address = ""
        self._lock_fd: int | None = None
        self._nats: EmbeddedNats | None = None
        self._nats_crashes: list[float] = []
        self._jetstream = JetStreamWatch()
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._stopping = False
        self._fatal = ""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._forwarders: list[asyncio.Task[None]] = []
        self._metrics: MetricsServer | None = None
        self.node_id = ""

    # -- public surface -------------------------------------------------------------------------

    def endpoints(self) -> dict[str, str]:
        """The address of each running child, by the full name of its gRPC service.

        The HTTP gateway serves no gRPC methods: its process is not listed. With TLS on the
        public address none is: the children listen on loopback, plaintext, and a client that
        dialed them would bypass TLS (or fail to reach them).
        """
        if self._tls:
            return {}
        return {
            c.grpc_service: c.address
            for c in self.children
            if c.serving and c.address and _has_descriptor(c.grpc_service)
        }

    def metrics_targets(self) -> dict[str, str]:
        """The metrics address of each running child, by service name."""
        return {c.name: c.metrics_address for c in self.children if c.metrics_address}

    @property
    def metrics_address(self) -> str:
        """Where the node serves ``/metrics`` (empty: nowhere)."""
        return self._metrics.address if self._metrics is not None else ""

    def _serve_metrics(self) -> None:
        listen = self.settings.metrics_listen.strip()
        explicit = bool(listen)
        if not explicit:
            listen = DEFAULT_METRICS_LISTEN
        if not metrics_enabled(listen):
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ChildrenCollector(self.metrics_targets))
        try:
            self._metrics = serve_metrics(listen, registry=registry)
        except OSError as err:
            if explicit:
                raise SupervisorError(
                    f"cannot serve metrics on {listen}: {err.strerror or err}"
                ) from None
            log.warning("pandanode: metrics not served: %s is in use (set metrics_listen)", listen)

    def _channel_for(self, service: str) -> grpc.aio.Channel | None:
        for child in self.children:
            if child.grpc_service == service and child.address:
                return child.channel
        return None

    async def _bind(self) -> None:
        settings = self.settings
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
            ("grpc.http.overload_protection", 0),
            ("grpc.so_reuseport", 0),
        ]
        _check_port_free(settings.listen)
        described = [c.grpc_service for c in self.children if _has_descriptor(c.grpc_service)]
        kinds = method_kinds(_descriptor(name) for name in described)
        server = guarded_server(
            grpc.aio.server(
                handlers=[PassThrough(kinds, self._channel_for, trusted=settings.trusted_networks)],
                options=options,
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        node_pb2_grpc.add_NodeServiceServicer_to_server(_NodeServicer(self), server)
        names = [
            *described,
            NODE_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        ]
        add_reflection(server, names)
        try:
            port = bind(server, settings.listen, settings)
        except SettingsError as err:
            raise SupervisorError(str(err)) from None
        if port == 0:
            raise SupervisorError(
                f"cannot listen on {settings.listen}: the address is in use or not available"
            )
        internal = port
        if self._tls:
            internal = server.add_insecure_port("127.0.0.1:0")
            if internal == 0:
                raise SupervisorError("cannot listen on 127.0.0.1 for the service processes")
        for name in ["", *names, *(c.grpc_service for c in self.children)]:
            await self._health.set(name, _NOT_SERVING)
        await self._health.set(NODE_SERVICE, _SERVING)
        await server.start()
        self._server = server
        self.address = f"{self._host}:{port}"
        self.internal_address = f"{'127.0.0.1' if self._tls else self._host}:{internal}"

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set (then drain and return 0) or a part cannot be kept running.

        Raises:
            SupervisorError: the node could not start (data directory in use, port busy, …).
        """
        self._lock_fd = lock_data_dir(self.settings.data_dir)
        started = False
        try:
            if "discovery" in (c.name for c in self.children):
                key = load_or_create_node_key(self.settings.data_dir / NODE_KEY_FILE)
                self.node_id = key.public_key()
            await self._bind()
            self._serve_metrics()
            if not self.nats_url:
                self._nats = EmbeddedNats.for_data_dir(
                    self.settings.data_dir, monitor=self.settings.nats_monitor_listen
                )
                await self._nats.start()
                self.nats_url = self._nats.url
            starts = [asyncio.create_task(self._start_child(child)) for child in self.children]
            try:
                await asyncio.gather(*starts)
            except BaseException:
                for start in starts:  # the children already started are drained below
                    start.cancel()
                await asyncio.gather(*starts, return_exceptions=True)
                raise
            await self._set_overall()
            started = True
            print(self._banner(), flush=True)
            for child in self.children:
                self._tasks.append(asyncio.create_task(self._keep(child), name=child.name))
            self._tasks.append(asyncio.create_task(self._watch(), name="watch"))
            stopper = asyncio.create_task(stop.wait())
            failed = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stopper, failed], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            failed.cancel()
        finally:
            if started:
                print("pandanode: draining…", flush=True)
            await self._drain()
        if self._fatal:
            raise SupervisorError(self._fatal)
        return 0

    def _banner(self) -> str:
        extras = [f"pandanode {version()}"]
        if self.node_id:
            extras.append(f"node id {self.node_id}")
        extras.append(f"data in {self.settings.data_dir}")
        if self._metrics is not None:
            extras.append(f"metrics on http://{self._metrics.address}/metrics")
        if self._nats is not None and self._nats.monitor_address:
            extras.append(f"nats monitoring on http://{self._nats.monitor_address}")
        children = ", ".join(f"{c.name} pid {_pid(c)} on {c.address}" for c in self.children)
        http = "".join(
            f"; HTTP (GraphQL) on http://{c.http_address}" for c in self.children if c.http_address
        )
        return f"pandanode listening on {self.address} ({'; '.join(extras)}; {children}){http}"

    async def _drain(self) -> None:
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.stop(5.0)
        await asyncio.gather(*(self._stop_child(c, DRAIN_GRACE) for c in self.children))
        if self._forwarders:  # the children's last lines (they exited: their pipes end)
            await asyncio.wait(self._forwarders, timeout=5.0)
        for forwarder in self._forwarders:
            forwarder.cancel()
        if self._nats is not None:
            await self._nats.stop()
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- children -------------------------------------------------------------------------------

    def _command(self, child: _Child) -> list[str]:
        return [
            *dies_with_parent_prefix(),
            sys.executable,
            "-m",
            "pandanode.services.cli",
            "serve",
            child.name,
            "--nats",
            self.nats_url,
            "--listen",
            f"{self._child_host}:{child.port}",
            "--data-dir",
            str(self.settings.data_dir),
            # The gateway calls the others through the pass-through (it dials them directly
            # when the node advertises their endpoints).
            *(
                ["--ingest", self.internal_address, "--query", self.internal_address]
                if child.name == "gateway"
                else []
            ),
            "--metrics-listen",
            "127.0.0.1:0" if self._metrics is not None else "off",
        ]

    async def _start_child(self, child: _Child) -> None:
        """Start a child, read its bound address, wait for it to be SERVING."""
        env = {**os.environ, **settings_environment(self.settings)}
        env["PANDANODE_ADVERTISE_ADDRESS"] = self.settings.advertise_address or advertised(
            self.address, self.settings
        )
        # Replication reaches ingest through the public address (the pass-through), which
        # stays the same when ingest restarts on another port.
        env["PANDANODE_INGEST_ADDRESS"] = self.settings.ingest_address or self.internal_address
        if self._nats is not None and child.name in self._nats.users:
            # The URL on their command line carries no password; each connects as its own
            # NATS user, allowed only the subjects its service needs.
            env["PANDANODE_NATS_CREDENTIALS_FILE"] = str(
                service_credentials_file(self.settings.data_dir, child.name)
            )
        elif self._nats is not None:
            env["PANDANODE_NATS_CREDENTIALS_FILE"] = str(
                self.settings.data_dir / NATS_CREDENTIALS_FILE
            )
        if self._tls:  # the children serve plaintext on loopback; only the public address is TLS
            env["PANDANODE_TLS_CERT_FILE"] = env["PANDANODE_TLS_KEY_FILE"] = ""
        # Mutual TLS is for a split deployment's services; these talk on loopback.
        for name in ("CERT", "KEY", "CA"):
            env[f"PANDANODE_INTERNAL_TLS_{name}_FILE"] = ""
        process = await asyncio.create_subprocess_exec(
            *self._command(child),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it drains the rest
        )
        child.process = process
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        address = ""
        while not address:
            try:
                line = await asyncio.wait_for(
                    process.stdout.readline(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                line = b""
            if not line:
                child.port = 0  # the old port may be taken: let the next start pick one
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                code = await process.wait()
                raise SupervisorError(f"{child.name} did not start (exit code {code})")
            text = line.decode(errors="replace").rstrip()
            if text.startswith(_READY_LINE):
                address = text[len(_READY_LINE) :].split(" ", 1)[0]
                child.http_address = text.partition("; http on ")[2].partition(";")[0].rstrip(")")
                _, mark, metrics = text.rstrip(")").partition(_METRICS_MARK)
                child.metrics_address = metrics if mark else ""
            else:
                print(f"[{child.name}] {text}", flush=True)
        self._forwarders.append(asyncio.create_task(_forward(child.name, process.stdout)))
        child.address = address
        _, child.port = split_host_port(address)
        if child.channel is not None:
            await child.channel.close(None)
        child.channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ],
        )
        stub = health_pb2_grpc.HealthStub(child.channel)
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == _SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            if process.returncode is not None or time.monotonic() > deadline:
                raise SupervisorError(f"{child.name} did not become SERVING")
            await asyncio.sleep(0.05)  # poll: the child is starting
        child.serving = child.healthy = True
        await self._health.set(child.grpc_service, _SERVING)
        log.info("pandanode: %s running as pid %d on %s", child.name, process.pid, address)

    async def _stop_child(self, child: _Child, grace: float) -> None:
        process = child.process
        child.serving = False
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning(
                    "pandanode: %s did not drain within %.0f s; killing it", child.name, grace
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if child.channel is not None and self._stopping:
            await child.channel.close(None)
            child.channel = None

    async def _keep(self, child: _Child) -> None:
        """Restart ``child`` whenever it exits, with back-off; give up after too many crashes."""
        while True:
            assert child.process is not None
            code = await child.process.wait()
            child.serving = False
            await self._health.set(child.grpc_service, _NOT_SERVING)
            await self._set_overall()
            if child.planned_restart:
                child.planned_restart = False
                delay = 0.0
            elif code == EXIT_RESTART:  # it asked to be started again, to recover
                self._say(f"pandanode: {child.name} restarts to recover (it asked to)")
                delay = 0.0
            else:
                delay = _backoff(child.crashes)
                if delay < 0:
                    self._give_up(f"{child.name} exited with {code} {MAX_RESTARTS} times")
                    return
                self._say(
                    f"pandanode: {child.name} exited with {code}; restarting in {delay:.1f} s "
                    f"(restart {len(child.crashes)})"
                )
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._start_child(child)
                except SupervisorError as err:
                    delay = _backoff(child.crashes)
                    if delay < 0:
                        self._give_up(f"{err}; gave up after {MAX_RESTARTS} attempts")
                        return
                    self._say(f"pandanode: {err}; retrying in {delay:.1f} s")
                    continue
                break
            await self._set_overall()

    async def _watch(self) -> None:
        """Watch NATS (restart it on its port) and the children's own health."""
        try:
            while True:
                await asyncio.sleep(WATCH_INTERVAL)  # poll: a Popen has no exit callback
                nats = self._nats
                if nats is not None and nats.exited():
                    await self._restart_nats(nats, "exited")
                elif nats is not None and await self._jetstream_needs_restart(nats):
                    await nats.stop()
                    await self._restart_nats(nats, "had switched JetStream off")
                for child in self.children:
                    await self._check_child(child)
                await self._set_overall()
        finally:
            await self._jetstream.close()

    async def _jetstream_needs_restart(self, nats: EmbeddedNats) -> bool:
        """Whether JetStream is off (a full disk) and there is space again to restart it.

        While it is off the node is NOT_SERVING: publishes may still be stored, but nothing
        is announced or materialized until nats-server restarts.
        """
        watch = self._jetstream
        was_broken = watch.broken
        if not await watch.check(nats):
            return False
        if not was_broken:
            self._say(
                f"pandanode: nats-server switched JetStream off ({watch.reason}); it is "
                f"restarted once {self.settings.recovery_free_bytes // 2**20} MiB are free"
            )
            await self._set_overall()
        return free_bytes(nats.store_dir) >= self.settings.recovery_free_bytes

    async def _restart_nats(self, nats: EmbeddedNats, why: str) -> None:
        self._jetstream.reset()
        for child in self.children:
            child.serving = False
            await self._health.set(child.grpc_service, _NOT_SERVING)
        await self._set_overall()
        while True:
            delay = _backoff(self._nats_crashes)
            if delay < 0:
                self._give_up(f"nats-server {why} {MAX_RESTARTS} times")
                return
            self._say(
                f"pandanode: nats-server {why}; restarting in {delay:.1f} s "
                f"(restart {len(self._nats_crashes)})"
            )
            why = "did not start again"
            await asyncio.sleep(delay)
            fresh = EmbeddedNats(
                store_dir=nats.store_dir,
                host=nats.host,
                port=nats.port,
                monitor=nats.monitor,
                user=nats.user,
                password=nats.password,
                users=nats.users,
            )
            try:
                await fresh.start()
            except NatsServerError as err:
                log.warning("pandanode: nats-server did not start again: %s", err)
                continue
            self._nats = fresh
            break
        # The children reconnect on their own, but restarting them re-runs every recovery
        # (the outbox re-announces, the consumer resumes from its checkpoint): nothing stuck.
        for child in self.children:
            child.planned_restart = True
            await self._stop_child(child, DRAIN_GRACE)

    async def _check_child(self, child: _Child) -> None:
        if not child.serving or child.channel is None:
            return
        stub = health_pb2_grpc.HealthStub(child.channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT)
            status = response.status
        except grpc.aio.AioRpcError:
            status = _NOT_SERVING
        if child.serving:  # not restarted meanwhile
            child.healthy = status == _SERVING
            await self._health.set(child.grpc_service, status)

    async def _set_overall(self) -> None:
        if self._stopping:
            return
        nats_up = self._nats is None or (not self._nats.exited() and not self._jetstream.broken)
        up = nats_up and all(c.serving and c.healthy for c in self.children)
        await self._health.set("", _SERVING if up else _NOT_SERVING)

    def _say(self, message: str) -> None:
        """Tell the operator on stderr: a plain line, or a log record when logs are JSON."""
        if json_logging():
            log.warning("%s", message)
        else:
            print(message, file=sys.stderr, flush=True)

    def _give_up(self, reason: str) -> None:
        self._fatal = f"{reason}; stopping the node"  # printed once, by the command
        self._stop.set()


def _pid(child: _Child) -> str:
    return str(child.process.pid) if child.process is not None else "?"


def _check_port_free(listen: str) -> None:
    """Raise a one-line error if ``listen`` (``host:port``) cannot be bound right now.

    gRPC would fail too, but with a C-level log line on stderr before our message.
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)
    except OSError as err:
        raise SupervisorError(f"cannot listen on {listen}: {err.strerror or err}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            raise SupervisorError(
                f"cannot listen on {listen}: {err.strerror or err} (is another node running?)"
            ) from None


def _backoff(crashes: list[float]) -> float:
    """Record a crash; the delay before the next start, or -1 to give up."""
    now = time.monotonic()
    crashes[:] = [t for t in crashes if now - t < RESTART_WINDOW]
    crashes.append(now)
    if len(crashes) > MAX_RESTARTS:
        return -1.0
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** (len(crashes) - 1))


async def _forward(name: str, stream: asyncio.StreamReader) -> None:
    """Copy a child's standard output to ours, each line prefixed with the service's name."""
    while line := await stream.readline():
        print(f"[{name}] {line.decode(errors='replace').rstrip()}", flush=True)


def _has_descriptor(full_name: str) -> bool:
    """False for a service that serves no gRPC methods of its own (the HTTP gateway)."""
    try:
        descriptor_pool.Default().FindServiceByName(full_name)
    except KeyError:
        return False
    return True


def _descriptor(full_name: str) -> ServiceDescriptor:
    return descriptor_pool.Default().FindServiceByName(full_name)


class _NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """``pandanode.node.v1.NodeService``: where each service can be dialed directly."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    async def GetEndpoints(  # noqa: N802 - gRPC method name
        self,
        request: node_pb2.GetEndpointsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> node_pb2.GetEndpointsResponse:
        return node_pb2.GetEndpointsResponse(endpoints=self._supervisor.endpoints())
