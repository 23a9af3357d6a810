"""Mutual TLS between the services of a split deployment (settings ``internal_tls_cert_file``,
``internal_tls_key_file``, ``internal_tls_ca_file``): every service's listener takes only
callers with a certificate of the internal CA, and every call between services (the entry
point to its routes, replication to ingest, the gateway to ingest and query) presents one.
Certificates are made by the test with the ``openssl`` CLI."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.deployment import Nginx, find_nginx, render_nginx_site, write_nginx_config
from pandanode.client import Client, KeyPair
from pandanode.replication.v1 import replication_pb2 as rpb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.entry import EntryPoint, Route
from pandanode.services.health import run as health_run
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port
from pandanode.services.runtime.settings import Settings, SettingsError
from tests.services.gateway.helpers import data

from .certificates import Certificates, make_certificates
from .support import eventually, node_settings

NEXT_ARGS = "query N($pk: String!) { nextArgs(publicKey: $pk) { logId seqNum } }"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("internal-tls"))


async def _health(address: str, credentials: grpc.ChannelCredentials | None) -> Any:
    """The health answer at ``address`` (a status), or the gRPC error code it failed with."""
    if credentials is None:
        channel = grpc.aio.insecure_channel(address)
    else:
        channel = grpc.aio.secure_channel(address, credentials)
    async with channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as err:
            return err.code()
    return answer.status


def _credentials(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


@dataclass
class Split:
    ingest: Node
    query: Node
    replication: Node
    gateway: Node
    entry: EntryPoint


@pytest.fixture
async def split(tmp_path: Path, certificates: Certificates) -> AsyncIterator[Split]:
    """ingest, query, replication and the gateway each a node of its own, and the entry point,
    all with mutual TLS between them (the entry point's public side is plaintext)."""
    nats = EmbeddedNats(store_dir=tmp_path / "nats")
    await nats.start()

    def settings(name: str, **changes: Any) -> Settings:
        return node_settings(
            tmp_path / name,
            nats_url=nats.url,
            lan_discovery=False,
            **certificates.settings(),
            **changes,
        )

    nodes: list[Node] = []
    entry: EntryPoint | None = None
    try:
        for name in ("ingest", "query"):
            node = Node(settings(name), (name,))
            await node.start()
            nodes.append(node)
        ingest, query = nodes
        upstream = {"ingest_address": ingest.address, "query_address": query.address}
        for name in ("replication", "gateway"):
            node = Node(settings(name, **upstream), (name,))
            await node.start()
            nodes.append(node)
        entry = EntryPoint(
            settings("entry"),
            [Route("ingest", (ingest.address,)), Route("query", (query.address,))],
        )
        await entry.start()
        yield Split(ingest, query, nodes[2], nodes[3], entry)
    finally:
        if entry is not None:
            await entry.stop()
        for node in reversed(nodes):
            await node.stop()
        await nats.stop()


async def test_an_internal_listener_refuses_a_client_without_a_certificate_of_the_ca(
    split: Split, certificates: Certificates
) -> None:
    ca = certificates.ca
    for node in (split.ingest, split.query, split.replication, split.gateway):
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(
            node.address, _credentials(ca, certificates.cert, certificates.key)
        ) == (serving)
        assert await _health(node.address, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
        assert await _health(node.address, _credentials(ca)) == grpc.StatusCode.UNAVAILABLE
        stranger = _credentials(ca, certificates.stranger_cert, certificates.stranger_key)
        assert await _health(node.address, stranger) == grpc.StatusCode.UNAVAILABLE


async def test_a_split_deployment_with_mutual_tls_between_services_publishes_reads_and_replicates(
    tmp_path: Path, split: Split, certificates: Certificates
) -> None:
    # Through the entry point (plaintext outside, mutual TLS to ingest and query).
    async with Client.connect(split.entry.address, key_pair=KeyPair()) as client:
        venue = await client.create_schema("venue", "A place", {"name": "str"})
        hall = await client.create(venue, {"name": "Hall"})
        document = await client.get_document(hall.document_id, after=hall)
        assert document.fields == {"name": "Hall"}
    # The gateway reaches ingest over mutual TLS.
    async with httpx.AsyncClient(base_url=f"http://{split.gateway.http_address}") as http:
        result = await data(http, NEXT_ARGS, {"pk": KeyPair().public_key()})
    assert result["nextArgs"] == {"logId": "0", "seqNum": "1"}
    # Replication syncs from a peer (plain, another node) and hands what it gets to ingest over
    # mutual TLS; query materializes it.
    async with Node(node_settings(tmp_path / "peer", lan_discovery=False)) as peer:
        async with Client.connect(peer.address, key_pair=KeyPair()) as writer:
            room = await writer.create_schema("room", "A room", {"name": "str"})
            lobby = await writer.create(room, {"name": "Lobby"})
        credentials = _credentials(certificates.ca, certificates.cert, certificates.key)
        async with grpc.aio.secure_channel(split.replication.address, credentials) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            await stub.SyncWith(rpb.SyncWithRequest(address=peer.address), timeout=30)
    async with Client.connect(split.entry.address) as reader:

        async def replicated() -> bool:
            try:
                found = await reader.get_document(lobby.document_id)
            except Exception:
                return False
            return bool(found.fields.get("name") == "Lobby")

        await eventually(replicated, timeout=30, what="the peer's document, through ingest")


async def test_pandanode_health_asks_a_service_with_mutual_tls_from_the_environment(
    split: Split, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pandanode.services.cli import build_parser

    for name, path in (("CERT", certificates.cert), ("KEY", certificates.key)):
        monkeypatch.setenv(f"PANDANODE_INTERNAL_TLS_{name}_FILE", str(path))
    monkeypatch.setenv("PANDANODE_INTERNAL_TLS_CA_FILE", str(certificates.ca))
    args = build_parser().parse_args(["health", "--address", split.ingest.address])
    # A blocking call: in a thread, so the nodes of this event loop can answer.
    assert await asyncio.to_thread(health_run, args) == 0
    monkeypatch.delenv("PANDANODE_INTERNAL_TLS_CA_FILE")
    plain = build_parser().parse_args(["health", "--address", split.ingest.address])
    assert await asyncio.to_thread(health_run, plain) == 1


def test_internal_tls_needs_all_three_files(certificates: Certificates) -> None:
    with pytest.raises(SettingsError, match="internal_tls_ca_file"):
        Settings(
            internal_tls_cert_file=str(certificates.cert),
            internal_tls_key_file=str(certificates.key),
        )


def _readme_nginx_directives() -> str:
    """The nginx directives deploy/README.md gives for mutual TLS to the services."""
    readme = (Path(__file__).resolve().parents[2] / "deploy" / "README.md").read_text()
    section = readme.split("## Mutual TLS between services", 1)[1]
    match = re.search(r"```nginx\n(.*?)```", section, re.DOTALL)
    assert match is not None, "deploy/README.md lost its nginx snippet"
    return str(match.group(1))


async def test_nginx_with_the_directives_of_the_deploy_readme_calls_the_services_with_mutual_tls(
    tmp_path: Path, split: Split, certificates: Certificates
) -> None:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (make setup installs it where apt-get can)")
    directives = _readme_nginx_directives()
    for name, path in (
        ("tls.crt", certificates.cert),
        ("tls.key", certificates.key),
        ("ca.crt", certificates.ca),
    ):
        directives = directives.replace(f"/etc/pandanode/internal-tls/{name}", str(path))
    listen = f"127.0.0.1:{free_port()}"
    upstreams = {
        "ingest": [split.ingest.address],
        "query": [split.query.address],
        "discovery": [split.ingest.address],  # not run here: any address
        "replication": [split.replication.address],
        "gateway": [split.gateway.http_address],
    }
    site = render_nginx_site(upstreams, listen, f"127.0.0.1:{free_port()}")
    site = site.replace("grpc_pass grpc://", "grpc_pass grpcs://")
    # The certificate names localhost: the README's per-location grpc_ssl_name, once.
    indented = "".join(f"    {line}\n" for line in directives.splitlines())
    site = site.replace(
        f"    listen {listen} http2;\n",
        f"    listen {listen} http2;\n{indented}    grpc_ssl_name localhost;\n",
    )
    nginx = Nginx(binary, write_nginx_config(tmp_path / "nginx", site), listen)
    await nginx.start()
    try:
        async with Client.connect(listen, key_pair=KeyPair()) as client:
            venue = await client.create_schema("venue", "A place", {"name": "str"})
            assert str((await client.get_schema(venue)).id) == venue
    finally:
        nginx.stop()
