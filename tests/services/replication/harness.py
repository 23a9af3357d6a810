"""A malicious peer: a test client speaking ``ReplicationService/Sync`` to a real node.

It is not a node. It writes whatever messages a test gives it, in whatever order, as any node
id, and reads how the node ends the session (status code and ``ErrorInfo`` reason). It can also
behave: :func:`catch_up` runs an honest catch-up session as a fresh peer (proof that a node
still serves after a bad session), and :class:`PeerServer` answers the node's own dials as a
chosen node id (proof that a refused peer is refused when the node dials too).

Entries to misbehave with are built from :class:`tests.services.support.FieldDefinitionLog`
(valid logs of a system schema): :func:`forged`, :func:`with_wrong_backlink`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pandanode.core import (
    KeyPair,
    decode_entry,
    encode_operation,
    generate_hash,
    sign_and_encode_entry,
)
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from tests.services.support import FieldDefinitionLog

__all__ = [
    "SYNC_METHOD",
    "Ended",
    "PeerServer",
    "SyncPeer",
    "announce",
    "catch_up",
    "entries",
    "forged",
    "have",
    "send_raw",
    "with_wrong_backlink",
]

SYNC_METHOD: Final = "/pandanode.replication.v1.ReplicationService/Sync"
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
# A digest no node has: the node answers it with its Have.
DIFFERENT_DIGEST: Final = b"x" * 32
Entry = tuple[str, int, int, str]


@dataclass(frozen=True)
class Ended:
    """How the node ended a session: its status code and the ``ErrorInfo`` reason."""

    code: grpc.StatusCode
    reason: str = ""


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def forged(request: ipb.PublishRequest) -> ipb.PublishRequest:
    """``request`` with one signature bit flipped (the entry's last byte)."""
    entry = bytearray(request.entry)
    entry[-1] ^= 0x01
    return ipb.PublishRequest(entry=bytes(entry), operation=request.operation)


def with_wrong_backlink(log: FieldDefinitionLog, seq_num: int) -> ipb.PublishRequest:
    """Entry ``seq_num`` of ``log``, validly signed by its author, backlinking to a hash that is
    not entry ``seq_num - 1``'s (whose operation it does update)."""
    operation = encode_operation(
        action="update",
        schema_id="schema_field_definition_v1",
        previous=[log.hashes[seq_num - 1]],
        fields={"name": "after a wrong backlink"},
    )
    entry = sign_and_encode_entry(
        operation,
        log.key_pair,
        log_id=log.log_id,
        seq_num=seq_num,
        backlink=generate_hash(b"not the previous entry"),
    )
    return ipb.PublishRequest(entry=entry, operation=operation)


def entries(*items: ipb.PublishRequest) -> pb.SyncMessage:
    """An Entries message."""
    return pb.SyncMessage(entries=pb.Entries(items=list(items)))


def have(logs: Sequence[tuple[str, int, int]], *, last: bool = True) -> pb.SyncMessage:
    """A Have message naming (public key, log id, seq num) of each log."""
    message = pb.Have(last=last)
    for public_key, log_id, seq_num in logs:
        message.authors.add(public_key=public_key).logs.add(log_id=log_id, seq_num=seq_num)
    return pb.SyncMessage(have=message)


def announce(
    node_id: str, schema_ids: Sequence[str] = ("*",), live: bool = False
) -> pb.SyncMessage:
    """An Announce message of protocol version 1."""
    return pb.SyncMessage(
        announce=pb.Announce(
            protocol_version=1, node_id=node_id, schema_ids=list(schema_ids), live=live
        )
    )


class SyncPeer:
    """One ``Sync`` call to the node at ``address``, as the node ``node_id`` (fresh by default).

    Use as ``async with SyncPeer(address) as peer``; :meth:`ended` reads to the end of the call.
    """

    def __init__(
        self, address: str, node_id: str | None = None, schema_ids: Sequence[str] = ("*",)
    ) -> None:
        self.address = address
        self.node_id = node_id or KeyPair().public_key()
        self.schema_ids = tuple(schema_ids)
        self.received: list[pb.SyncMessage] = []
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None

    async def __aenter__(self) -> SyncPeer:
        self._channel = grpc.aio.insecure_channel(self.address)
        stub = replication_pb2_grpc.ReplicationServiceStub(self._channel)
        self._call = stub.Sync()  # type: ignore[call-arg]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            await self._channel.close(None)

    async def send(self, *messages: pb.SyncMessage) -> None:
        """Write ``messages`` in order (a write to an ended call is ignored: see :meth:`ended`)."""
        for message in messages:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await self._call.write(message)

    async def done_writing(self) -> None:
        """Close our side of the stream (an honest peer does after its SyncDone)."""
        await self._call.done_writing()

    async def read(self) -> pb.SyncMessage | None:
        """The node's next message; None at the end of its side."""
        message = await self._call.read()
        if message is _EOF:
            return None
        assert isinstance(message, pb.SyncMessage)
        self.received.append(message)
        return message

    async def read_kinds(self, count: int) -> list[str]:
        """The kinds of the node's next ``count`` messages."""
        kinds: list[str] = []
        for _ in range(count):
            message = await self.read()
            assert message is not None, f"the node ended its side after {kinds}"
            kinds.append(str(message.WhichOneof("message")))
        return kinds

    async def handshake(self) -> None:
        """Announce, claim a digest the node does not have; read the node's Announce and
        HaveDigest. The node then sends its Have and waits for ours."""
        await self.send(
            announce(self.node_id, self.schema_ids),
            pb.SyncMessage(have_digest=pb.HaveDigest(digest=DIFFERENT_DIGEST, log_count=0)),
        )
        assert await self.read_kinds(2) == ["announce", "have_digest"]

    async def open_sync(self) -> None:
        """:meth:`handshake`, then an empty last Have: the node may now be sent entries."""
        await self.handshake()
        await self.send(have([]))

    async def ended(self, timeout: float = 15.0) -> Ended:
        """Read the node's messages to the end of the call; how it ended."""

        async def drain() -> Ended:
            try:
                while await self.read() is not None:
                    pass
            except grpc.aio.AioRpcError as err:
                return Ended(err.code(), _reason(err))
            return Ended(await self._call.code())

        return await asyncio.wait_for(drain(), timeout)


async def send_raw(address: str, payloads: Sequence[bytes], timeout: float = 15.0) -> Ended:
    """Write ``payloads`` as raw message bytes on a Sync call; how the node ended it."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            SYNC_METHOD,
            request_serializer=lambda raw: raw,
            response_deserializer=pb.SyncMessage.FromString,
        )(iter(payloads))
        try:
            async with asyncio.timeout(timeout):
                async for _ in call:
                    pass
        except grpc.aio.AioRpcError as err:
            return Ended(err.code(), _reason(err))
        return Ended(await call.code())


async def catch_up(address: str) -> set[Entry]:
    """An honest catch-up session as a fresh peer holding nothing: every entry the node sent.

    Fails unless the node completes the session (status OK).
    """
    received: set[Entry] = set()
    async with SyncPeer(address) as peer:
        await peer.handshake()
        await peer.send(have([]))
        while True:
            message = await peer.read()
            assert message is not None, "the node ended its side before its SyncDone"
            kind = message.WhichOneof("message")
            if kind == "entries":
                for item in message.entries.items:
                    entry = decode_entry(item.entry)
                    received.add((entry.public_key, entry.log_id, entry.seq_num, entry.hash))
            elif kind == "sync_done":
                break
        await peer.send(pb.SyncMessage(sync_done=pb.SyncDone()))
        await peer.done_writing()
        ended = await peer.ended()
        assert ended == Ended(grpc.StatusCode.OK), ended
    return received


@dataclass
class _Served:
    announces: list[pb.Announce] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


class PeerServer:
    """A gRPC server answering ``Sync`` as the node ``node_id``: Announce, then it reads what
    the dialing node sends (recorded in :attr:`served`) until the node ends the call."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.served = _Served()
        self.address = ""
        self._server: grpc.aio.Server | None = None

    async def __aenter__(self) -> PeerServer:
        served, node_id = self.served, self.node_id

        async def sync(requests: AsyncIterator[pb.SyncMessage], context: Any) -> Any:
            yield announce(node_id).SerializeToString()
            async for message in requests:
                served.kinds.append(str(message.WhichOneof("message")))
                if message.HasField("announce"):
                    served.announces.append(message.announce)

        handler = grpc.method_handlers_generic_handler(
            "pandanode.replication.v1.ReplicationService",
            {
                "Sync": grpc.stream_stream_rpc_method_handler(
                    sync,
                    request_deserializer=pb.SyncMessage.FromString,
                    response_serializer=lambda raw: raw,
                )
            },
        )
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(None)
