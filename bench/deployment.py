"""A split deployment on loopback, as compose would start it, without a container engine.

Three nats-server processes form one NATS cluster with JetStream (the event stream kept with 3
replicas) and the deployment's NATS users (deploy/nats/users.conf: each service its own, with
only its subjects); ``pandanode serve ingest``, two ``serve query`` replicas (each with its own
data directory and durable consumer), ``serve discovery`` and ``pandanode proxy`` (the one public
address) each run as their own OS process, each service connecting as its NATS user from a
credentials file. Used by the distributed-mode test
(``tests/distributed``) and the bench's ``distributed.*`` scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.services.runtime.nats_server import (
    EmbeddedNats,
    cluster_of,
    free_port,
    with_credentials,
)
from pandanode.services.runtime.nats_users import (
    ADMIN_USER,
    credentials_file_name,
    write_credentials,
)
from pandanode.services.runtime.settings import PAGE_TOKEN_SECRET_FILE

__all__ = [
    "NGINX_TEMPLATE",
    "InternalTls",
    "STREAM_REPLICAS",
    "Deployment",
    "Nginx",
    "ServiceProcess",
    "deployment",
    "find_nginx",
    "health_of",
    "nginx_config",
    "render_nginx_site",
    "write_nginx_config",
]

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]
STREAM_REPLICAS = 3
NGINX_TEMPLATE = (
    Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "pandanode.conf.template"
)


@dataclass(frozen=True)
class InternalTls:
    """The files of mutual TLS between the services (``internal_tls_*`` settings)."""

    cert: Path
    key: Path
    ca: Path

    def environment(self) -> dict[str, str]:
        """The settings as a service process reads them."""
        return {
            "PANDANODE_INTERNAL_TLS_CERT_FILE": str(self.cert),
            "PANDANODE_INTERNAL_TLS_KEY_FILE": str(self.key),
            "PANDANODE_INTERNAL_TLS_CA_FILE": str(self.ca),
        }

    def credentials(self) -> grpc.ChannelCredentials:
        """What a caller presents to a service (the services' own certificate)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


def _channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, credentials)


async def health_of(
    address: str,
    service: str = "",
    timeout: float = 1.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> int | None:
    """The health status ``address`` reports for ``service``; None when it does not answer."""
    try:
        async with _channel(address, credentials) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.aio.AioRpcError:
        return None
    return int(response.status)


@dataclass(eq=False)
class ServiceProcess:
    """One ``pandanode`` process of the deployment; its output goes to a log file."""

    name: str
    args: list[str]
    address: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    credentials: grpc.ChannelCredentials | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the process (with its output appended to :attr:`log_path`)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*PANDANODE, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PANDANODE_LAN_DISCOVERY": "false", **self.env},
            )

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Poll health until the process says SERVING; fail if it exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}: {self.output()[-3000:]}"
                )
            status = await health_of(self.address, credentials=self.credentials)
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not serving after {timeout}s: {self.output()}")
            await asyncio.sleep(0.05)  # poll: the process is starting

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the process and wait until it drained and exited; returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(eq=False)
class Deployment:
    """The processes of a split deployment and their addresses."""

    nats: list[EmbeddedNats]
    ingest: ServiceProcess
    queries: list[ServiceProcess]
    discovery: ServiceProcess
    entry: ServiceProcess
    admin_password: str = field(default="", repr=False)

    @property
    def nats_url(self) -> str:
        """The client URLs of every NATS server, comma-separated, as the ``admin`` NATS user.

        For tools (``pandanode check``, stream info); the services connect as their own users.
        """
        return ",".join(
            with_credentials(server.url, ADMIN_USER, self.admin_password) for server in self.nats
        )

    @property
    def services(self) -> list[ServiceProcess]:
        """Every pandanode process, the entry point last."""
        return [self.ingest, *self.queries, self.discovery, self.entry]


def _serve(
    root: Path,
    name: str,
    service: str,
    nats_url: str,
    extra: list[str] | None = None,
    internal_tls: InternalTls | None = None,
) -> ServiceProcess:
    """A ``pandanode serve`` process connecting to NATS as ``service``'s own user."""
    address = f"127.0.0.1:{free_port()}"
    data_dir = root / name
    args = [
        "serve",
        service,
        "--nats",
        nats_url,
        "--listen",
        address,
        "--data-dir",
        str(data_dir),
        "--stream-replicas",
        str(STREAM_REPLICAS),
        "--log-level",
        "WARNING",
        *(extra or []),
    ]
    credentials = root / "nats-secrets" / credentials_file_name(service)
    env = {"PANDANODE_NATS_CREDENTIALS_FILE": str(credentials)}
    if internal_tls is None:
        return ServiceProcess(name, args, address, root / f"{name}.log", env)
    env |= internal_tls.environment()
    return ServiceProcess(
        name, args, address, root / f"{name}.log", env, internal_tls.credentials()
    )


@contextlib.asynccontextmanager
async def deployment(
    root: Path, query_replicas: int = 2, internal_tls: InternalTls | None = None
) -> AsyncIterator[Deployment]:
    """Start the whole split deployment under ``root``; stop (kill) everything at the end.

    With ``internal_tls``, the services speak mutual TLS with each other and with the entry
    point (whose public side stays plaintext).
    """
    root.mkdir(parents=True, exist_ok=True)
    passwords = write_credentials(root / "nats-secrets")
    nats = cluster_of(root, 3, users=passwords)
    await asyncio.gather(*(server.start() for server in nats))
    url = ",".join(server.url for server in nats)
    ingest = _serve(root, "ingest", "ingest", url, internal_tls=internal_tls)
    queries = []
    for index in range(query_replicas):
        name = f"query-{chr(ord('a') + index)}"
        # Replicas behind one address share the page-token secret, so a page token one gave
        # works on the next call, which may go to the other.
        shared = ["--page-token-secret-file", str(root / PAGE_TOKEN_SECRET_FILE)]
        queries.append(
            _serve(root, name, "query", url, ["--query-durable", name, *shared], internal_tls)
        )
    discovery = _serve(
        root, "discovery", "discovery", url, ["--no-lan-discovery"], internal_tls=internal_tls
    )
    entry_address = f"127.0.0.1:{free_port()}"
    entry = ServiceProcess(
        "entry",
        [
            "proxy",
            "--listen",
            entry_address,
            "--route",
            f"ingest={ingest.address}",
            "--route",
            "query=" + ",".join(query.address for query in queries),
            "--route",
            f"discovery={discovery.address}",
        ],
        entry_address,
        root / "entry.log",
        internal_tls.environment() if internal_tls is not None else {},
    )
    deployed = Deployment(nats, ingest, queries, discovery, entry, passwords[ADMIN_USER])
    try:
        for process in deployed.services:
            process.start()
        for process in deployed.services:
            await process.wait_serving()
        yield deployed
    finally:
        for process in deployed.services:
            process.kill()
        for server in nats:
            await server.stop()


def find_nginx() -> str | None:
    """The ``nginx`` binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").is_file():
        found = "/usr/sbin/nginx"
    return found


def render_nginx_site(
    upstreams: Mapping[str, Sequence[str]],
    grpc_listen: str,
    http_listen: str,
    template: str | None = None,
) -> str:
    """The entry point's nginx server blocks, as deploy/compose.yaml's nginx image makes them.

    deploy/nginx/pandanode.conf.template (or ``template``, a copy of it) with each
    ``${PANDANODE_<NAME>_ADDR}`` replaced by one ``server`` line per address of
    ``upstreams[name]`` (the image's envsubst puts one name there, resolving to every replica),
    and the gRPC (2020) and HTTP (2021) ports replaced by ``grpc_listen`` and ``http_listen``.

    Raises:
        ValueError: an upstream of the template has no address in ``upstreams``.
    """
    text = NGINX_TEMPLATE.read_text() if template is None else template

    def servers(match: re.Match[str]) -> str:
        name = match.group(2).lower()
        if not upstreams.get(name):
            raise ValueError(f"no address for the nginx upstream {name!r}")
        return "".join(f"{match.group(1)}server {address};\n" for address in upstreams[name])

    text = re.sub(r"( *)server \$\{PANDANODE_([A-Z]+)_ADDR\};\n", servers, text)
    text = text.replace("listen 2020 http2;", f"listen {grpc_listen} http2;")
    return text.replace("listen 2021;", f"listen {http_listen};")


def write_nginx_config(root: Path, site: str) -> Path:
    """Write a whole nginx configuration under ``root`` around ``site``; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nginx-server.conf").write_text(site)
    temp = root / "nginx-temp"
    temp.mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would switch to the user "nobody", who cannot read these files.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = root / "nginx.conf"
    main.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "nginx-error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    include {root / "nginx-server.conf"};
}}
"""
    )
    return main


def nginx_config(root: Path, listen: str, deployed: Deployment) -> Path:
    """Write the entry point's nginx configuration for ``deployed`` under ``root``.

    The deployment runs no replication service and no HTTP gateway: their upstreams get an
    address nothing listens on, so calls to them fail as with a service that is down.
    """
    nowhere = f"127.0.0.1:{free_port()}"
    upstreams = {
        "ingest": [deployed.ingest.address],
        "query": [query.address for query in deployed.queries],
        "discovery": [deployed.discovery.address],
        "replication": [nowhere],
        "gateway": [nowhere],
    }
    site = render_nginx_site(upstreams, listen, f"127.0.0.1:{free_port()}")
    return write_nginx_config(root, site)


@dataclass(eq=False)
class Nginx:
    """nginx in front of a deployment (``grpc_pass``, deploy/nginx/pandanode.conf.template)."""

    binary: str
    config: Path
    address: str
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    async def start(self, timeout: float = 20.0) -> None:
        """Start nginx and wait until it routes a health check to ingest."""
        log = self.config.parent / "nginx.out"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config), "-e", str(self.config.parent / "e.log")],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while await health_of(self.address) != health_pb2.HealthCheckResponse.SERVING:
            if self.process.poll() is not None or time.monotonic() > deadline:
                errors = self.config.parent / "nginx-error.log"
                text = log.read_text() + (errors.read_text() if errors.exists() else "")
                raise RuntimeError(f"nginx did not serve on {self.address}: {text[-2000:]}")
            await asyncio.sleep(0.05)  # poll: nginx is starting

    def stop(self) -> None:
        """Stop nginx (SIGQUIT would wait for open streams: SIGTERM is fast shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
