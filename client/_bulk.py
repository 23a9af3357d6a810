"""Many entries over one ``PublishStream``: signing ahead, raw imports, exports.

:class:`_PublishStream` sends batches with at most ``max_in_flight`` unanswered (a slow node
slows the sender down instead of piling up memory) and gathers one result per item. Items for
:func:`publish_many` are signed by the :class:`~pandanode.client._writer.Writer` ahead of the
node's answers; items for :func:`bulk_import` are sent exactly as given, and those rejected
only for a missing dependency are sent again after the rest, as long as that helps.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Final, TypeAlias, TypeVar, cast

import grpc
import grpc.aio

from pandanode.core.entry import decode_entry
from pandanode.core.errors import PandanodeError, Reason
from pandanode.core.operation import decode_operation
from pandanode.core.schema import (
    BLOB_PIECE_V1_ID,
    BLOB_V1_ID,
    SCHEMA_DEFINITION_V1_ID,
    SCHEMA_FIELD_DEFINITION_V1_ID,
    Schema,
    SchemaId,
)
from pandanode.ingest.v1 import ingest_pb2 as pb

from ._connection import Connection
from ._errors import DeadlineExceededError, NodeUnavailableError, error_for_code, from_rpc_error
from ._logheights import all_log_heights
from ._models import BulkResult, Create, Delete, Published, Update
from ._requests import (
    DocumentLike,
    SchemaLike,
    Target,
    check_operation,
    create_operation,
    delete_operation,
    update_operation,
)
from ._writer import POSITION_REASONS, Action, Outgoing, Writer

__all__ = ["Progress", "bulk_import", "export", "publish_many"]

Progress: TypeAlias = Callable[[int, int | None], None]
"""Called with (items done, items in all or None when unknown)."""

_Item: TypeAlias = Outgoing | tuple[int, PandanodeError]  # to send, or failed before sending
_T = TypeVar("_T")

_MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
# Raw imports retry items that may only lack an earlier item (another log's, or a schema).
_DEPENDENCY_REASONS: Final = POSITION_REASONS | {
    Reason.SCHEMA_NOT_FOUND,
    Reason.PREVIOUS_NOT_FOUND,
}
# Export order: what other logs build on first.
_EXPORT_RANK: Final = {
    SCHEMA_FIELD_DEFINITION_V1_ID: 0,
    SCHEMA_DEFINITION_V1_ID: 1,
    BLOB_PIECE_V1_ID: 2,
    BLOB_V1_ID: 3,
}


async def publish_many(
    connection: Connection,
    writer: Writer,
    operations: Iterable[Create | Update | Delete] | AsyncIterable[Create | Update | Delete],
    *,
    schema_of: Callable[[SchemaLike], Awaitable[Schema]],
    target_of: Callable[[DocumentLike], Awaitable[Target]],
    batch_size: int,
    max_in_flight: int,
    progress: Progress | None,
) -> BulkResult:
    """Sign and publish many operations (see :meth:`pandanode.client.Client.publish_many`).

    Args:
        connection: The connection.
        writer: Signs the items.
        operations: The items.
        schema_of: Looks up a schema.
        target_of: Finds the view an update or delete builds on.
        batch_size: Items per message.
        max_in_flight: Batches sent but not yet answered.
        progress: Called as items are done.
    """
    total = len(operations) if isinstance(operations, list | tuple) else None

    async def sign(index: int, item: Create | Update | Delete) -> Outgoing:
        target: Target | None = None
        action: Action
        if isinstance(item, Create):
            action = "create"
            schema = await schema_of(cast(SchemaLike, item.schema))
            operation = create_operation(schema, item.fields)
        else:
            target = await target_of(item.document)
            schema = await schema_of(target.schema_id)
            if isinstance(item, Update):
                action = "update"
                operation = update_operation(schema, target, item.fields)
            else:
                action = "delete"
                operation = delete_operation(target)
        if schema.id.is_system:
            # fields_for checked field names, types and ids; the system schemas have extra
            # rules (names, MIME types, piece sizes), checked here as the node checks them.
            check_operation(operation, schema)
        return await writer.sign_ahead(index, operation, schema, action, target)

    async def outgoing() -> AsyncIterator[_Item]:
        index = 0
        async for operation in _aiter(operations):
            try:
                yield await sign(index, operation)
            except PandanodeError as err:
                yield index, err
            index += 1

    stream = _PublishStream(connection, batch_size, max_in_flight, progress, total)
    return await stream.run(outgoing())


async def bulk_import(
    connection: Connection,
    entries: Iterable[tuple[bytes, bytes]] | AsyncIterable[tuple[bytes, bytes]],
    *,
    batch_size: int,
    max_in_flight: int,
    progress: Progress | None,
    retry_dependencies: bool,
) -> BulkResult:
    """Publish already signed pairs (see :meth:`pandanode.client.Client.bulk_import`)."""
    total = len(entries) if isinstance(entries, list | tuple) else None
    kept: dict[int, Outgoing] | None = {} if retry_dependencies else None

    async def outgoing() -> AsyncIterator[_Item]:
        index = 0
        async for entry, operation in _aiter(entries):
            try:
                item = _raw_item(index, entry, operation)
            except PandanodeError as err:
                yield index, err
            else:
                yield item
            index += 1

    stream = _PublishStream(connection, batch_size, max_in_flight, progress, total, kept)
    result = await stream.run(outgoing())
    results = list(result.results)
    started = time.perf_counter() - result.elapsed
    while kept:
        waiting = [kept[index] for index in sorted(kept)]
        kept = {}
        retry = _PublishStream(connection, batch_size, max_in_flight, None, None, kept)
        retried = await retry.run(_aiter(waiting), indices=[item.index for item in waiting])
        progressed = False
        for item, outcome in zip(waiting, retried.results, strict=True):
            if isinstance(outcome, Published):
                progressed = True
            results[item.index] = outcome
        if not progressed:
            break
    return BulkResult(results, time.perf_counter() - started)


async def export(
    connection: Connection,
    schema_ids: Iterable[str],
    public_key: str | None,
    *,
    definitions: bool = False,
) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """Every stored pair, log by log (see :meth:`pandanode.client.Client.export`)."""
    wanted = list(schema_ids)
    heights = list(await _log_heights(connection, wanted))
    if public_key is not None:
        heights = [h for h in heights if h.public_key == public_key]
    if wanted and definitions:
        # The definitions come along whoever wrote them: without them no node can take the rest.
        known = {(h.public_key, h.log_id) for h in heights}
        heights.extend(
            h
            for h in await _definition_logs(connection, wanted)
            if (h.public_key, h.log_id) not in known
        )
    heights.sort(key=lambda h: (_EXPORT_RANK.get(h.schema_id, 4), h.public_key, h.log_id))
    for height in heights:
        async for entry, operation in _read_log(connection, height):
            yield entry, operation


async def _log_heights(connection: Connection, schema_ids: Sequence[str]) -> Sequence[pb.LogHeight]:
    ingest = connection.ingest

    async def get_page(request: pb.GetLogHeightsRequest) -> pb.GetLogHeightsResponse:
        return await connection.call(
            lambda: ingest.GetLogHeights(request, timeout=connection.timeout)
        )

    return list(await all_log_heights(get_page, schema_ids))


async def _read_log(
    connection: Connection, height: pb.LogHeight
) -> AsyncGenerator[tuple[bytes, bytes], None]:
    read = pb.ReadLogRequest(public_key=height.public_key, log_id=height.log_id)
    try:
        async for page in connection.ingest.ReadLog(read, timeout=connection.timeout):
            for stored in page.entries:
                yield stored.entry, stored.operation
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from err


_RELATION_TARGET: Final = re.compile(r"^[a-z_]*relation(?:_list)?\((.+)\)$")


async def _definition_logs(connection: Connection, schema_ids: Sequence[str]) -> list[pb.LogHeight]:
    """The logs of the definitions of ``schema_ids`` and of the schemas their relations target.

    A schema id names the view of its ``schema_definition_v1`` document; that view lists the
    ``schema_field_definition_v1`` views of its fields, and a relation field's type names
    another schema. Each log found is exported whole (a later entry needs the earlier ones).
    """
    logs = await _log_heights(connection, [SCHEMA_DEFINITION_V1_ID, SCHEMA_FIELD_DEFINITION_V1_ID])
    where: dict[str, pb.LogHeight] = {}  # operation id → its log
    fields: dict[tuple[str, int], list[Mapping[str, object]]] = {}  # log → its operations' fields
    for height in logs:
        key = (height.public_key, height.log_id)
        async for entry, operation in _read_log(connection, height):
            where[decode_entry(entry, verify=False).hash] = height
            values = decode_operation(operation).fields
            if values is not None:
                fields.setdefault(key, []).append(values)
    found: dict[tuple[str, int], pb.LogHeight] = {}

    def follow(operation_ids: Iterable[str]) -> list[Mapping[str, object]]:
        values: list[Mapping[str, object]] = []
        for operation_id in operation_ids:
            height = where.get(operation_id)
            if height is None:
                continue  # not on this node: the import will name what is missing
            key = (height.public_key, height.log_id)
            if key not in found:
                found[key] = height
                values.extend(fields.get(key, []))
        return values

    pending = list(schema_ids)
    seen: set[str] = set()
    while pending:
        schema_id = pending.pop()
        if schema_id in seen:
            continue
        seen.add(schema_id)
        try:
            view_id = SchemaId.from_str(schema_id).view_id
        except PandanodeError:
            continue  # the listing of this id failed (or will) with the node's own message
        if view_id is None:
            continue  # a system schema: every node has it
        field_views = [
            view
            for definition in follow(view_id.ids)
            for view in _as_list(definition.get("fields"))
        ]
        for field in follow(str(op) for view in field_views for op in _as_list(view)):
            target = _RELATION_TARGET.match(str(field.get("type", "")))
            if target is not None:
                pending.append(target.group(1))
    return list(found.values())


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


class _PublishStream:
    """One ``PublishStream`` call: bounded in-flight batches out, one result per item back.

    Items rejected only for a missing dependency are put into ``waiting`` (when given), to be
    sent again.
    """

    def __init__(
        self,
        connection: Connection,
        batch_size: int,
        max_in_flight: int,
        progress: Progress | None,
        total: int | None,
        waiting: dict[int, Outgoing] | None = None,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the node's max_batch_items)")
        self._connection = connection
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(max(1, max_in_flight))
        self._progress = progress
        self._total = total
        self._waiting = waiting
        self._results: dict[int, Published | PandanodeError] = {}
        self._sent: deque[list[Outgoing]] = deque()
        self._wake = asyncio.Event()
        self._writer_done = False
        self._done = 0
        self._unanswered: dict[int, Outgoing] = {}  # signed here and handed to the writer
        self._call: grpc.aio.StreamStreamCall[pb.PublishStreamRequest, pb.PublishStreamResponse]

    async def run(
        self, items: AsyncIterator[_Item], indices: list[int] | None = None
    ) -> BulkResult:
        """Send ``items``; the results in ``indices`` order (a retry pass), else by index."""
        started = time.perf_counter()
        self._call = self._connection.ingest.PublishStream(None)
        writing = asyncio.create_task(self._write(items))
        try:
            await self._read(writing)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
        finally:
            if not writing.done():
                writing.cancel()
                with contextlib.suppress(BaseException):
                    await writing
            self._call.cancel()
            self._forget_unanswered()
        order = indices if indices is not None else sorted(self._results)
        return BulkResult([self._results[index] for index in order], time.perf_counter() - started)

    def _report(self, count: int) -> None:
        self._done += count
        if self._progress is not None:
            self._progress(self._done, self._total)

    async def _send(self, batch: list[Outgoing]) -> None:
        await self._slots.acquire()
        self._sent.append(batch)
        self._wake.set()
        request = pb.PublishStreamRequest(
            items=[pb.PublishRequest(entry=i.entry, operation=i.operation) for i in batch]
        )
        await self._call.write(request)

    async def _write(self, items: AsyncIterator[_Item]) -> None:
        try:
            batch: list[Outgoing] = []
            size = 0
            async for item in items:
                if isinstance(item, tuple):
                    self._results[item[0]] = item[1]
                    self._report(1)
                    continue
                batch.append(item)
                if item.document_id:
                    self._unanswered[item.index] = item
                size += len(item.entry) + len(item.operation)
                if len(batch) >= self._batch_size or size >= _MAX_BATCH_BYTES:
                    await self._send(batch)
                    batch, size = [], 0
            if batch:
                await self._send(batch)
            await self._call.done_writing()
        finally:
            self._writer_done = True
            self._wake.set()

    async def _read(self, writing: asyncio.Task[None]) -> None:
        timeout = self._connection.timeout
        while True:
            while not self._sent and not self._writer_done:
                await self._wake.wait()
                self._wake.clear()
            if not self._sent:
                await writing  # raises what the writer raised
                return
            try:
                response = await asyncio.wait_for(self._call.read(), timeout)
            except TimeoutError:
                raise DeadlineExceededError(
                    f"the node did not answer a batch within {timeout} s"
                ) from None
            if response is _EOF:
                raise NodeUnavailableError("the node ended the publish stream early")
            assert isinstance(response, pb.PublishStreamResponse)
            batch = self._sent.popleft()
            self._slots.release()
            self._record(batch, response)

    def _record(self, batch: list[Outgoing], response: pb.PublishStreamResponse) -> None:
        writes = self._connection.writes
        for item, answer in zip(batch, response.results, strict=True):
            result = self._results[item.index] = _outcome(item, answer)
            if self._unanswered.pop(item.index, None) is not None:
                if isinstance(result, Published):
                    writes.stored(item.document_id, item.operation_id)
                else:
                    writes.rejected(item.document_id, item.operation_id)
            if (
                self._waiting is not None
                and isinstance(result, PandanodeError)
                and result.reason in _DEPENDENCY_REASONS
            ):
                self._waiting[item.index] = item
        self._report(len(batch))

    def _forget_unanswered(self) -> None:
        # The stream broke: whether these were stored is unknown, so later writes ask the node
        # instead of building on them.
        for item in self._unanswered.values():
            self._connection.writes.rejected(item.document_id, item.operation_id)
            if item.log is not None:
                item.log.forget()


async def _aiter(items: Iterable[_T] | AsyncIterable[_T]) -> AsyncIterator[_T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _raw_item(index: int, entry: bytes, operation: bytes) -> Outgoing:
    decoded = decode_entry(entry, verify=False)  # the node verifies; this only reads positions
    op = decode_operation(operation)
    return Outgoing(
        index=index,
        entry=entry,
        operation=operation,
        schema_id=op.schema_id,
        action=op.action,
        public_key=decoded.public_key,
        log_id=decoded.log_id,
        seq_num=decoded.seq_num,
    )


def _outcome(item: Outgoing, result: pb.PublishResult) -> Published | PandanodeError:
    if result.HasField("ok"):
        return Published(
            operation_id=result.ok.operation_id,
            document_id=result.ok.document_id,
            view_id=result.ok.operation_id,
            schema_id=item.schema_id,
            action=item.action,
            public_key=item.public_key,
            log_id=item.log_id,
            seq_num=item.seq_num,
        )
    if item.log is not None:
        item.log.forget()
    error = result.error
    return error_for_code(error.code, error.reason, error.message).about(**error.metadata)
