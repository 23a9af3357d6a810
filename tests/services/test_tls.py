"""TLS on the public gRPC listener (settings ``tls_cert_file`` / ``tls_key_file``): a client
that trusts the node's certificate is served, a plaintext client and one that does not trust
the certificate are not; ``pandanode up`` keeps its service processes on loopback, plaintext,
and advertises none of them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.client import Client, KeyPair, NodeUnavailableError, ResourceNotFoundError
from pandanode.client._endpoints import EndpointChannel, tls_credentials
from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import free_port
from pandanode.services.runtime.settings import Settings, SettingsError

from .support import NodeProcess, children_of, eventually, node_settings

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]


def self_signed(directory: Path, name: str = "node") -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 and its key (mode 0600)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


async def named(client: Client, document_id: str) -> object:
    """The document's ``name`` once the node has materialized it (None before)."""
    try:
        document = await client.get_document(document_id)
    except ResourceNotFoundError:
        return None
    return document.fields.get("name")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
def settings(tmp_path: Path, certificate: tuple[Path, Path]) -> Settings:
    """An in-process node (as ``pandanode serve`` runs) with TLS on its listener."""
    cert, key = certificate
    return node_settings(tmp_path / "data", tls_cert_file=str(cert), tls_key_file=str(key))


async def test_a_client_that_trusts_the_certificate_publishes_and_reads_over_tls(
    node: Node, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    async with Client.connect(node.address, key_pair=KeyPair(), tls_ca=cert) as client:
        venue = await client.create_schema("venue", "A place", {"name": "str"})
        hall = await client.create(venue, {"name": "Hall"})
        assert await eventually(lambda: named(client, hall.document_id)) == "Hall"


async def test_a_plaintext_client_is_not_served_by_a_tls_listener(node: Node) -> None:
    async with Client.connect(node.address, timeout=2, retries=0) as client:
        with pytest.raises(NodeUnavailableError):
            await client.list_schemas()


async def test_a_client_that_does_not_trust_the_certificate_is_refused(
    node: Node, tmp_path: Path
) -> None:
    other, _ = self_signed(tmp_path, "other")
    options: list[tuple[bool, Path | None]] = [(True, None), (False, other)]
    for tls, tls_ca in options:
        async with Client.connect(
            node.address, timeout=2, retries=0, tls=tls, tls_ca=tls_ca
        ) as client:
            with pytest.raises(NodeUnavailableError):
                await client.list_schemas()


def test_tls_needs_both_the_certificate_and_the_key(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file"):
        Settings(tls_cert_file=str(cert))
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file"):
        Settings(tls_key_file=str(key))


async def test_a_missing_certificate_file_stops_serve_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *PANDANODE, "serve", "query", "--data-dir", str(tmp_path / "data"),
            "--listen", f"127.0.0.1:{free_port()}", "--nats-url", "nats://127.0.0.1:1",
        ],
        env={
            **os.environ,
            "PANDANODE_TLS_CERT_FILE": str(tmp_path / "missing.crt"),
            "PANDANODE_TLS_KEY_FILE": str(tmp_path / "missing.key"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "tls_cert_file" in result.stderr and "Traceback" not in result.stderr


# -- pandanode up ---------------------------------------------------------------------------------


@pytest.fixture
async def tls_up(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> AsyncIterator[tuple[NodeProcess, str]]:
    cert, key = certificate
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Public on every interface: the service processes must still listen on loopback only.
    process = NodeProcess(
        [
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"0.0.0.0:{port}",
            "--no-lan-discovery",
        ],
        env={"PANDANODE_TLS_CERT_FILE": str(cert), "PANDANODE_TLS_KEY_FILE": str(key)},
    )
    process.start()
    try:
        credentials = tls_credentials(cert)

        async def serving() -> bool:
            assert process.process is not None and process.process.poll() is None, "up exited"
            async with grpc.aio.secure_channel(address, credentials) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                try:
                    answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    return False
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, timeout=60, what="pandanode up serving over TLS")
        yield process, address
    finally:
        process.close()


async def test_up_with_tls_serves_the_public_address_only_over_tls_and_advertises_no_endpoints(
    tls_up: tuple[NodeProcess, str], certificate: tuple[Path, Path]
) -> None:
    process, address = tls_up
    cert, _ = certificate
    async with grpc.aio.secure_channel(address, tls_credentials(cert)) as channel:
        endpoints = await node_pb2_grpc.NodeServiceStub(channel).GetEndpoints(
            node_pb2.GetEndpointsRequest(), timeout=5
        )
        info = await discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNodeInfo(
            discovery_pb2.GetNodeInfoRequest(), timeout=5
        )
    assert dict(endpoints.endpoints) == {}
    # Peers are told to dial it over TLS.
    assert info.address == f"tls://0.0.0.0:{address.rsplit(':', 1)[1]}"
    # Every call through the public address: the gateway and replication too reach ingest
    # through the supervisor's loopback port, so publishing and reading work end to end.
    async with Client.connect(address, key_pair=KeyPair(), tls_ca=cert) as client:
        channel_of_client = client._shared.channel
        assert isinstance(channel_of_client, EndpointChannel)
        assert await channel_of_client.resolve() == {}
        venue = await client.create_schema("venue", "A place", {"name": "str"})
        hall = await client.create(venue, {"name": "Hall"})
        assert await eventually(lambda: named(client, hall.document_id)) == "Hall"
    # The service processes listen on loopback, plaintext (ports of their own).
    assert process.process is not None
    listening = _listening_ports(process.process.pid)
    assert listening and all(host == "127.0.0.1" for host, _ in listening), listening
    # `pandanode health` asks over TLS; plaintext gets no answer.
    health = subprocess.run(
        [*PANDANODE, "health", "--address", address, "--tls-ca", str(cert)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert health.returncode == 0, health.stderr
    assert "SERVING" in health.stdout
    plain = subprocess.run(
        [*PANDANODE, "health", "--address", address, "--timeout", "2"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert plain.returncode == 1


def _listening_ports(pid: int) -> list[tuple[str, int]]:
    """(host, port) of every TCP socket the node's service processes listen on."""
    children = children_of(pid)
    inodes: set[str] = set()
    for name, child in children.items():
        if name == "nats-server":
            continue
        fd_dir = Path(f"/proc/{child}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = fd.readlink()
            except OSError:
                continue
            if str(target).startswith("socket:["):
                inodes.add(str(target)[8:-1])
    listening: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            host_hex, port_hex = local.split(":")
            if host_hex.startswith("0000000000000000FFFF0000"):  # an IPv4-mapped IPv6 address
                host_hex = host_hex[24:]
            if len(host_hex) == 8:  # little-endian
                host = ".".join(str(int(host_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                host = "::" if set(host_hex) == {"0"} else host_hex
            listening.append((host, int(port_hex, 16)))
    return listening


async def test_the_cli_dials_over_tls_with_tls_ca_or_its_environment_variable(
    node: Node, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    base = [*PANDANODE, "--node", node.address, "--timeout", "5"]

    async def cli(
        *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # On a thread: the node serves on this test's event loop.
        return await asyncio.to_thread(
            subprocess.run,
            [*base, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    flag = await cli("--tls-ca", str(cert), "schema", "list", "--json")
    assert flag.returncode == 0, flag.stderr
    variable = await cli("schema", "list", "--json", env={"PANDANODE_TLS_CA": str(cert)})
    assert variable.returncode == 0, variable.stderr
    plaintext = await cli("schema", "list")
    assert plaintext.returncode == 3, plaintext.stderr  # unreachable
