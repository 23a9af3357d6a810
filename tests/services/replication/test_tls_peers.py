"""Replication and discovery reach a node whose listener speaks TLS: it advertises ``tls://``,
peers dial such addresses over TLS and trust the authorities of ``peer_tls_ca_file``; a peer
that does not trust its certificate does not reach it."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.client import Client, KeyPair
from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.discovery.lan import decode_announcement, encode_announcement
from pandanode.services.runtime.peers import PeerDialer, advertised, split_scheme
from pandanode.services.runtime.settings import Settings, SettingsError
from tests.services.support import eventually
from tests.services.test_tls import self_signed

from .support import StartNode, log_entries, starter


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


async def test_a_tls_node_advertises_itself_with_the_tls_scheme(
    start: StartNode, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    async with start("a", tls_cert_file=str(cert), tls_key_file=str(key)) as a:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        async with grpc.aio.secure_channel(a.address, credentials) as channel:
            info = await discovery_pb2_grpc.DiscoveryServiceStub(channel).GetNodeInfo(
                discovery_pb2.GetNodeInfoRequest(), timeout=10
            )
    assert info.address == f"tls://{a.address}"


async def test_a_plaintext_node_replicates_with_a_tls_node_it_trusts(
    start: StartNode, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    async with start("a", tls_cert_file=str(cert), tls_key_file=str(key)) as a:
        async with Client.connect(a.address, key_pair=KeyPair(), tls_ca=cert) as author:
            venue = await author.create_schema("venue", "A place", {"name": "str"})
            await author.create(venue, {"name": "Hall"})
        # Entries of A, read on its plaintext loopback port (its own services use it).
        expected = await log_entries(a.internal_address)
        assert expected
        # Found by discovery (bootstrap), synced by replication: both over TLS.
        async with start(
            "b", bootstrap_peers=f"tls://{a.address}", peer_tls_ca_file=str(cert)
        ) as b:

            async def caught_up() -> bool:
                return await log_entries(b.address) >= expected

            await eventually(caught_up, timeout=30, what="B replicating A over TLS")
            # An explicit sync to the TLS address works too.
            async with grpc.aio.insecure_channel(b.address) as channel:
                session = await replication_pb2_grpc.ReplicationServiceStub(channel).SyncWith(
                    pb.SyncWithRequest(address=f"tls://{a.address}"), timeout=30
                )
            assert session.state == pb.SESSION_STATE_DONE, session


async def test_a_peer_that_does_not_trust_the_certificate_cannot_sync(
    start: StartNode, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    other, _ = self_signed(tmp_path, "other")
    async with (
        start("a", tls_cert_file=str(cert), tls_key_file=str(key)) as a,
        start("b", peer_tls_ca_file=str(other)) as b,
        grpc.aio.insecure_channel(b.address) as channel,
    ):
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        untrusted = await stub.SyncWith(pb.SyncWithRequest(address=f"tls://{a.address}"))
        plaintext = await stub.SyncWith(pb.SyncWithRequest(address=a.address))
    assert untrusted.state == pb.SESSION_STATE_FAILED
    assert plaintext.state == pb.SESSION_STATE_FAILED


def test_tls_addresses_parse_and_survive_a_lan_announcement(tmp_path: Path) -> None:
    assert split_scheme("tls://peer.example:2020") == (True, "peer.example:2020")
    assert split_scheme("10.0.0.1:2020") == (False, "10.0.0.1:2020")
    cert, key = self_signed(tmp_path)
    tls = Settings(tls_cert_file=str(cert), tls_key_file=str(key))
    assert advertised("0.0.0.0:2020", tls) == "tls://0.0.0.0:2020"
    assert advertised("tls://node.example:443", tls) == "tls://node.example:443"
    assert advertised("10.0.0.1:2020", Settings()) == "10.0.0.1:2020"
    datagram = encode_announcement("ab" * 32, "tls://0.0.0.0:2020")
    assert decode_announcement(datagram, "192.168.1.7") == ("ab" * 32, "tls://192.168.1.7:2020")
    with pytest.raises(SettingsError, match="peer_tls_ca_file"):
        PeerDialer(Settings(peer_tls_ca_file=str(tmp_path / "missing.pem")))
