"""A peer speaking Sync directly: undecodable entries, a second Announce, silence right after
the Announce, and a forked log (not the peer's fault). The other misbehaviours, the ban and an
honest node syncing meanwhile are in ``test_malicious_peer.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pandanode.core import KeyPair, decode_entry, encode_operation, sign_and_encode_entry
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import FieldDefinitionLog

from .support import log_entries, replication_settings


@pytest.fixture
async def honest(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(replication_settings(tmp_path / "a", peer_ban_after=3)) as node:
        yield node


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def bad_session(node: Node, peer_id: str, bad: list[pb.SyncMessage]) -> grpc.aio.AioRpcError:
    """Announce as ``peer_id``, differ in digest, send an empty Have, then ``bad``.

    A refused peer gets the node's Announce, then the error.
    """
    async with grpc.aio.insecure_channel(node.address) as channel:
        call = replication_pb2_grpc.ReplicationServiceStub(channel).Sync()  # type: ignore[call-arg]
        await call.write(
            pb.SyncMessage(
                announce=pb.Announce(
                    protocol_version=1, node_id=peer_id, schema_ids=["*"], live=False
                )
            )
        )
        await call.write(pb.SyncMessage(have_digest=pb.HaveDigest(digest=b"x" * 32)))
        # An honest peer sends its Have once it knows both digests differ.
        try:
            first = await call.read()
            assert isinstance(first, pb.SyncMessage)
            assert first.WhichOneof("message") == "announce"
            digest = await call.read()
            assert isinstance(digest, pb.SyncMessage)
            assert digest.WhichOneof("message") == "have_digest"
        except grpc.aio.AioRpcError as refused:
            return refused
        await call.write(pb.SyncMessage(have=pb.Have(last=True)))
        for message in bad:
            await call.write(message)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            while True:
                answer = await call.read()
                assert answer is not grpc.aio.EOF  # type: ignore[attr-defined]
        return raised.value


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (
            lambda log: [
                pb.SyncMessage(
                    entries=pb.Entries(items=[ipb.PublishRequest(entry=b"\x00", operation=b"")])
                )
            ],
            "INVALID_ENTRY",
        ),
        (
            lambda log: [pb.SyncMessage(announce=pb.Announce(protocol_version=1))],
            "PROTOCOL_VIOLATION",
        ),
    ],
    ids=["undecodable_entry", "second_announce"],
)
async def test_protocol_violations_end_the_session_with_their_reason(
    honest: Node, messages: Callable[[FieldDefinitionLog], list[pb.SyncMessage]], reason: str
) -> None:
    log = FieldDefinitionLog(KeyPair(), 0)
    err = await bad_session(honest, KeyPair().public_key(), messages(log))
    assert reason_of(err) == reason
    assert await log_entries(honest.address) == set()


async def test_a_peer_silent_before_sync_done_is_timed_out(tmp_path: Path) -> None:
    settings = replication_settings(tmp_path / "a", sync_idle_timeout=0.5)
    async with Node(settings) as node:
        async with grpc.aio.insecure_channel(node.address) as channel:
            call = replication_pb2_grpc.ReplicationServiceStub(channel).Sync()  # type: ignore[call-arg]
            peer = pb.Announce(protocol_version=1, node_id=KeyPair().public_key(), schema_ids=["*"])
            await call.write(pb.SyncMessage(announce=peer))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                    pass
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert reason_of(raised.value) == "SYNC_IDLE_TIMEOUT"


def forked_third_entry(log: FieldDefinitionLog) -> ipb.PublishRequest:
    """Entry 3 of the same author's log 0 after a different entry 2: a fork of ``log``."""
    other_two = encode_operation(
        action="update",
        schema_id="schema_field_definition_v1",
        previous=[log.hashes[1]],
        fields={"name": "forked"},
    )
    entry_two = sign_and_encode_entry(
        other_two, log.key_pair, log_id=0, seq_num=2, backlink=log.hashes[1]
    )
    hash_two = decode_entry(entry_two, verify=False).hash
    three = encode_operation(
        action="update",
        schema_id="schema_field_definition_v1",
        previous=[hash_two],
        fields={"name": "after the fork"},
    )
    entry_three = sign_and_encode_entry(three, log.key_pair, log_id=0, seq_num=3, backlink=hash_two)
    return ipb.PublishRequest(entry=entry_three, operation=three)


async def test_a_fork_is_skipped_without_ending_the_session(honest: Node) -> None:
    log = FieldDefinitionLog(KeyPair(), 0)
    async with grpc.aio.insecure_channel(honest.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for seq in (1, 2):
            await stub.Publish(log.entry(seq), timeout=10)
        before = await log_entries(honest.address)
        call = replication_pb2_grpc.ReplicationServiceStub(channel).Sync()  # type: ignore[call-arg]
        peer = pb.Announce(protocol_version=1, node_id=KeyPair().public_key(), schema_ids=["*"])
        await call.write(pb.SyncMessage(announce=peer))
        await call.write(pb.SyncMessage(have_digest=pb.HaveDigest(digest=b"x" * 32)))
        kinds: list[str | None] = []
        while len(kinds) < 2:
            message = await call.read()
            assert isinstance(message, pb.SyncMessage)
            kinds.append(message.WhichOneof("message"))
        assert kinds == ["announce", "have_digest"]
        await call.write(pb.SyncMessage(have=pb.Have(last=True)))
        fork = pb.SyncMessage(entries=pb.Entries(items=[forked_third_entry(log)]))
        await call.write(fork)
        await call.write(pb.SyncMessage(sync_done=pb.SyncDone()))
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
            pass
        assert await call.code() == grpc.StatusCode.OK
    assert await log_entries(honest.address) == before
    assert honest.replication is not None
    (record,) = honest.replication.ended
    assert record.forks == 1 and record.error_reason == ""
