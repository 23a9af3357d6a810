"""Small builders for the ingest tests: authors that sign valid next entries, schema publishing,
rich-status decoding, log and stream snapshots, and polling with a deadline (no sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from pandanode.core import (
    KeyPair,
    PinnedRelationList,
    encode_operation,
    generate_hash,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)
from pandanode.core.hash import hash_from_hex
from pandanode.core.operation import FieldValue
from pandanode.core.varu64 import encode_varu64
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    STREAM_NAME,
    IngestedOperation,
    parse_operations_ingested,
)
from tests.services.support import eventually

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

__all__ = [
    "FIELD_DEFINITION",
    "SCHEMA_DEFINITION",
    "Author",
    "Baseline",
    "Event",
    "Rejection",
    "Signed",
    "StoredState",
    "assert_rejected",
    "assert_unchanged",
    "baseline",
    "create_operation",
    "delete_operation",
    "expected_next_args",
    "log_heights",
    "publish",
    "publish_batches",
    "publish_schema",
    "read_log",
    "rejection",
    "rejection_of",
    "sign_raw",
    "stored_state",
    "stream_events",
    "announced_count",
    "update_operation",
    "wait_for_stream_count",
]

SCHEMA_DEFINITION = "schema_definition_v1"
FIELD_DEFINITION = "schema_field_definition_v1"
ERROR_DOMAIN = "pandanode"


# -- signed entries -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """An entry with the operation it signs, and where it sits."""

    entry: bytes
    operation: bytes
    public_key: str
    log_id: int
    seq_num: int

    @property
    def hash(self) -> str:
        """The entry hash, which is the operation id."""
        return generate_hash(self.entry)

    def request(self) -> pb.PublishRequest:
        """The Publish request for this entry."""
        return pb.PublishRequest(entry=self.entry, operation=self.operation)


def sign_raw(
    key_pair: KeyPair,
    operation: bytes,
    *,
    log_id: bytes = b"\x00",
    seq_num: bytes = b"\x01",
    links: Sequence[str] = (),
) -> bytes:
    """Sign hand-made entry fields (raw varu64 bytes, links in wire order), valid or not."""
    unsigned = b"".join(
        [
            b"\x00",
            key_pair.public_key_bytes(),
            log_id,
            seq_num,
            *(hash_from_hex(link) for link in links),
            encode_varu64(len(operation)),
            bytes.fromhex(generate_hash(operation)),
        ]
    )
    return unsigned + key_pair.sign(unsigned)


def expected_next_args(log_id: int, hashes: Sequence[str]) -> pb.NextArguments:
    """Next arguments after a log whose entry hashes (seq 1, 2, …) are ``hashes`` (spec §4.2).

    An empty ``hashes`` means a new log at ``log_id``.
    """
    seq_num = len(hashes) + 1
    if seq_num == 1:
        return pb.NextArguments(log_id=log_id, seq_num=1, backlink="", skiplink="")
    skiplink = hashes[lipmaa(seq_num) - 1] if is_skiplink_required(seq_num) else ""
    return pb.NextArguments(
        log_id=log_id, seq_num=seq_num, backlink=hashes[seq_num - 2], skiplink=skiplink
    )


@dataclass
class Author:
    """A key pair that keeps track of its logs, so it can sign valid next entries.

    Each document the author writes to lives in one log (spec §4.1); a new document, or the
    author's first operation on someone else's document, starts a new log with the next log id.
    Methods named ``sign_*`` never change the tracked state; ``write`` and ``record`` do.
    """

    key_pair: KeyPair = field(default_factory=KeyPair)
    logs: dict[int, list[Signed]] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)

    @property
    def public_key(self) -> str:
        """The author's public key (hex)."""
        return self.key_pair.public_key()

    def hashes(self, log_id: int) -> list[str]:
        """Entry hashes of one of the author's logs, by seq num from 1."""
        return [signed.hash for signed in self.logs.get(log_id, [])]

    def next_log_id(self) -> int:
        """The log id p2panda proposes for a new log: highest used + 1, or 0."""
        return max(self.logs, default=-1) + 1

    def position(self, document_id: str | None = None) -> pb.NextArguments:
        """Where the author's next entry for ``document_id`` goes (None: a new document)."""
        log_id = None if document_id is None else self.documents.get(document_id)
        if log_id is None:
            return expected_next_args(self.next_log_id(), [])
        return expected_next_args(log_id, self.hashes(log_id))

    def sign_at(
        self,
        operation: bytes,
        *,
        log_id: int,
        seq_num: int,
        backlink: str | None = None,
        skiplink: str | None = None,
    ) -> Signed:
        """Sign ``operation`` at any position, valid or not; nothing is recorded."""
        entry = sign_and_encode_entry(
            operation,
            self.key_pair,
            log_id=log_id,
            seq_num=seq_num,
            backlink=backlink,
            skiplink=skiplink,
        )
        return Signed(entry, operation, self.public_key, log_id, seq_num)

    def sign_next(self, operation: bytes, document_id: str | None = None) -> Signed:
        """Sign ``operation`` as the valid next entry for ``document_id``; nothing is recorded."""
        args = self.position(document_id)
        return self.sign_at(
            operation,
            log_id=args.log_id,
            seq_num=args.seq_num,
            backlink=args.backlink or None,
            skiplink=args.skiplink or None,
        )

    def record(self, signed: Signed, document_id: str | None = None) -> Signed:
        """Remember ``signed`` as stored (``document_id`` None: it starts a document)."""
        self.logs.setdefault(signed.log_id, []).append(signed)
        self.documents.setdefault(document_id or signed.hash, signed.log_id)
        return signed

    def write(self, operation: bytes, document_id: str | None = None) -> Signed:
        """Sign the valid next entry for ``document_id`` and record it."""
        return self.record(self.sign_next(operation, document_id), document_id)

    # operations --------------------------------------------------------------------------

    def create(self, schema_id: str, fields: Mapping[str, FieldValue]) -> Signed:
        """CREATE a document (a new log)."""
        return self.write(encode_operation(action="create", schema_id=schema_id, fields=fields))

    def update(
        self,
        schema_id: str,
        document_id: str,
        previous: Sequence[str],
        fields: Mapping[str, FieldValue],
    ) -> Signed:
        """UPDATE ``document_id`` on top of ``previous``."""
        operation = encode_operation(
            action="update", schema_id=schema_id, previous=sorted(previous), fields=fields
        )
        return self.write(operation, document_id)

    def delete(self, schema_id: str, document_id: str, previous: Sequence[str]) -> Signed:
        """DELETE ``document_id`` on top of ``previous``."""
        operation = encode_operation(
            action="delete", schema_id=schema_id, previous=sorted(previous)
        )
        return self.write(operation, document_id)


def create_operation(schema_id: str, fields: Mapping[str, FieldValue]) -> bytes:
    """A CREATE operation."""
    return encode_operation(action="create", schema_id=schema_id, fields=fields)


def update_operation(
    schema_id: str, previous: Sequence[str], fields: Mapping[str, FieldValue]
) -> bytes:
    """An UPDATE operation."""
    return encode_operation(
        action="update", schema_id=schema_id, previous=sorted(previous), fields=fields
    )


def delete_operation(schema_id: str, previous: Sequence[str]) -> bytes:
    """A DELETE operation."""
    return encode_operation(action="delete", schema_id=schema_id, previous=sorted(previous))


# -- calls ----------------------------------------------------------------------------------


async def publish(ingest: IngestServiceAsyncStub, signed: Signed) -> pb.PublishResponse:
    """Publish one entry over unary gRPC."""
    return await ingest.Publish(signed.request())


@dataclass(frozen=True, slots=True)
class Rejection:
    """What a failed call said: status code, ErrorInfo reason and message, and the other
    details: ErrorInfo metadata, BadRequest field violations (field, description), RetryInfo
    delay in seconds."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: tuple[tuple[str, str], ...] = ()
    retry_delay: float | None = None


def rejection_of(err: grpc.aio.AioRpcError) -> Rejection:
    """Decode the rich status of a failed call (``google.rpc.Status`` with an ``ErrorInfo``)."""
    status = rpc_status.from_call(cast(grpc.Call, err))
    assert status is not None, f"no rich status in {err.code()}: {err.details()}"
    assert status.code == err.code().value[0]
    infos = []
    violations: list[tuple[str, str]] = []
    retry_delay: float | None = None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            infos.append(info)
        elif detail.Unpack(bad_request):
            violations += [(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Unpack(retry):
            assert retry_delay is None, "two RetryInfo details"
            retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    assert len(infos) == 1, f"expected one ErrorInfo, got {status.details}"
    assert infos[0].domain == ERROR_DOMAIN
    return Rejection(
        err.code(),
        str(infos[0].reason),
        str(status.message),
        dict(infos[0].metadata),
        tuple(violations),
        retry_delay,
    )


async def rejection(call: Awaitable[object]) -> Rejection:
    """Await a call that must fail; return its decoded rich status."""
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return rejection_of(err)
    raise AssertionError(f"the call succeeded but should have been rejected: {result}")


async def publish_batches(
    ingest: IngestServiceAsyncStub, batches: Sequence[Sequence[Signed]]
) -> list[list[pb.PublishResult]]:
    """Send batches over one PublishStream; return the results of each batch."""

    async def requests() -> AsyncIterator[pb.PublishStreamRequest]:
        for batch in batches:
            yield pb.PublishStreamRequest(items=[signed.request() for signed in batch])

    answers: list[list[pb.PublishResult]] = []
    async for response in ingest.PublishStream(requests()):
        answers.append(list(response.results))
    return answers


async def publish_schema(
    ingest: IngestServiceAsyncStub,
    author: Author,
    name: str,
    fields: Mapping[str, str],
    description: str = "A schema made by a test",
) -> str:
    """Publish field definitions and a schema definition (spec §5.5); return the schema id."""
    views: list[list[str]] = []
    for field_name, field_type in fields.items():
        signed = author.create(FIELD_DEFINITION, {"name": field_name, "type": field_type})
        response = await publish(ingest, signed)
        views.append([response.operation_id])
    definition = author.create(
        SCHEMA_DEFINITION,
        {"description": description, "fields": PinnedRelationList(views), "name": name},
    )
    response = await publish(ingest, definition)
    return f"{name}_{response.operation_id}"


# -- reads ----------------------------------------------------------------------------------


async def log_heights(
    ingest: IngestServiceAsyncStub, schema_ids: Sequence[str] = ()
) -> dict[tuple[str, int], int]:
    """Every log's height: (public key, log id) → latest seq num."""
    response = await ingest.GetLogHeights(pb.GetLogHeightsRequest(schema_ids=list(schema_ids)))
    heights = {(h.public_key, h.log_id): h.seq_num for h in response.log_heights}
    assert len(heights) == len(response.log_heights), "a log is listed twice"
    return heights


async def read_log(
    ingest: IngestServiceAsyncStub, public_key: str, log_id: int, from_seq_num: int = 0
) -> list[pb.LogEntry]:
    """Every entry of one log from ``from_seq_num``, as the node streams them."""
    request = pb.ReadLogRequest(public_key=public_key, log_id=log_id, from_seq_num=from_seq_num)
    entries: list[pb.LogEntry] = []
    async for response in ingest.ReadLog(request):
        entries.extend(response.entries)
    return entries


@dataclass(frozen=True, slots=True)
class StoredState:
    """Everything the ingest service serves about its logs: heights and every log's entries."""

    heights: Mapping[tuple[str, int], int]
    entries: Mapping[tuple[str, int], tuple[tuple[int, bytes, bytes], ...]]


async def stored_state(ingest: IngestServiceAsyncStub) -> StoredState:
    """Snapshot the whole store through GetLogHeights and ReadLog."""
    heights = await log_heights(ingest)
    entries = {}
    for public_key, log_id in heights:
        stored = await read_log(ingest, public_key, log_id)
        entries[(public_key, log_id)] = tuple((e.seq_num, e.entry, e.operation) for e in stored)
    return StoredState(heights, entries)


# -- JetStream ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One announced operation: the stream message carrying it, and the operation."""

    stream_sequence: int
    subject: str
    message_id: str
    payload: IngestedOperation


async def announced_count(js: JetStreamContext) -> int:
    """How many operations were announced, by the store sequence of the last one.

    Store sequences count stored entries from 1 and are announced in order, so for a node
    started on an empty data directory this is the number of announced entries.
    """
    try:
        message = await js.get_last_msg(STREAM_NAME, OPERATIONS_INGESTED.subject_filter)
    except NotFoundError:
        return 0
    operations = parse_operations_ingested(message.data or b"").operations
    return int(operations[-1].sequence) if operations else 0


async def wait_for_stream_count(js: JetStreamContext, count: int, timeout: float = 10.0) -> None:
    """Wait until ``count`` operations were announced, then require exactly ``count`` in the
    stream, each once.

    Because ingest announces in store order, a caller that waits for the event of the last
    entry it stored knows that every earlier event is in too, so "exactly" is safe to check.
    """

    async def reached() -> bool:
        return await announced_count(js) >= count

    await eventually(
        reached, timeout=timeout, what=f"{count} operations in the {STREAM_NAME} stream"
    )
    operations = [event.payload.operation_id for event in await stream_events(js)]
    assert len(operations) == count, f"the stream holds {len(operations)}, expected {count}"
    assert len(set(operations)) == count, "an operation was announced twice"


async def stream_events(js: JetStreamContext) -> list[Event]:
    """Every announced operation, in stream order, with the message carrying it."""
    info = await js.stream_info(STREAM_NAME)
    events: list[Event] = []
    if not info.state.messages:
        return events
    for sequence in range(int(info.state.first_seq), int(info.state.last_seq) + 1):
        message = await js.get_msg(STREAM_NAME, seq=sequence)
        if message.subject != OPERATIONS_INGESTED.subject_filter:
            continue
        headers = message.headers or {}
        for operation in parse_operations_ingested(message.data or b"").operations:
            events.append(
                Event(
                    stream_sequence=int(message.seq or 0),
                    subject=str(message.subject),
                    message_id=str(headers.get("Nats-Msg-Id", "")),
                    payload=operation,
                )
            )
    return events


# -- rejections leave no trace --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Baseline:
    """The node's state before a call: the store as served, next args, the stream size."""

    state: StoredState
    next_args: Mapping[tuple[str, str], pb.NextArguments | str]
    events: int


async def _next_args_everywhere(
    ingest: IngestServiceAsyncStub, public_keys: Sequence[str]
) -> dict[tuple[str, str], pb.NextArguments | str]:
    """NextArgs of every author for a new document and for each of its logs' documents
    (a rejection reason where NextArgs refuses, e.g. for a deleted document)."""
    response = await ingest.GetLogHeights(pb.GetLogHeightsRequest())
    wanted = {(pk, "") for pk in public_keys}
    wanted |= {(h.public_key, "") for h in response.log_heights}
    wanted |= {(h.public_key, h.document_id) for h in response.log_heights}
    answers: dict[tuple[str, str], pb.NextArguments | str] = {}
    for public_key, document_id in sorted(wanted):
        request = pb.NextArgsRequest(public_key=public_key, document_view_id=document_id)
        try:
            answers[(public_key, document_id)] = (await ingest.NextArgs(request)).next_args
        except grpc.aio.AioRpcError as err:
            answers[(public_key, document_id)] = rejection_of(err).reason
    return answers


async def baseline(
    ingest: IngestServiceAsyncStub, js: JetStreamContext, public_keys: Sequence[str] = ()
) -> Baseline:
    """Capture the state once every stored entry has been announced.

    ``public_keys`` are authors (perhaps without logs yet) whose NextArgs are captured too.
    """
    state = await stored_state(ingest)
    events = sum(state.heights.values())
    await wait_for_stream_count(js, events)
    return Baseline(state, await _next_args_everywhere(ingest, public_keys), events)


async def assert_unchanged(
    ingest: IngestServiceAsyncStub, js: JetStreamContext, before: Baseline
) -> None:
    """The store serves exactly what it served before; then a valid publish still works and
    its event is the only one the stream gained (so the rejected entry was never announced)."""
    after = await stored_state(ingest)
    assert after.heights == before.state.heights, "a rejected entry changed the log heights"
    assert after.entries == before.state.entries, "a rejected entry changed a log"
    public_keys = sorted({pk for pk, _ in before.next_args})
    assert await _next_args_everywhere(ingest, public_keys) == before.next_args
    # The service keeps serving, and the stream holds one more event: this one's.
    probe = Author().create(FIELD_DEFINITION, {"name": "probe", "type": "str"})
    await publish(ingest, probe)
    await wait_for_stream_count(js, before.events + 1)
    events = await stream_events(js)
    assert events[-1].payload.operation_id == probe.hash


async def assert_rejected(
    ingest: IngestServiceAsyncStub,
    js: JetStreamContext,
    request: Signed | pb.PublishRequest,
    code: grpc.StatusCode,
    reason: str,
) -> Rejection:
    """Publish ``request``; it must fail with ``code`` and ``reason`` and leave no trace."""
    public_keys = [request.public_key] if isinstance(request, Signed) else []
    before = await baseline(ingest, js, public_keys)
    message = request.request() if isinstance(request, Signed) else request
    rejected = await rejection(ingest.Publish(message))
    assert (rejected.code, rejected.reason) == (code, reason), rejected.message
    assert rejected.message, "a rejection explains itself"
    await assert_unchanged(ingest, js, before)
    return rejected
