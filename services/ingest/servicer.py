"""The gRPC face of ingest: translate messages, call the use cases, map errors. Nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio

from pandanode.core.errors import PandanodeError
from pandanode.core.publish import NextArgs, PublishResult
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc as pb_grpc
from pandanode.services.runtime.errors import (
    InvalidRequestError,
    abort,
    bounded_message,
    error_info,
    status_code_for,
)

from .ingest import Ingest
from .store import StoredEntry

__all__ = ["IngestServicer"]


def _next_args(args: NextArgs) -> pb.NextArguments:
    return pb.NextArguments(
        log_id=args.log_id,
        seq_num=args.seq_num,
        backlink=args.backlink or "",
        skiplink=args.skiplink or "",
    )


def _fill(message: pb.PublishResponse, result: PublishResult) -> None:
    # Set in place: building the nested messages and passing them to a constructor copies each
    # one, about three times the cost per item of a PublishStream answer.
    message.operation_id = result.operation_id
    message.document_id = result.document_id
    args = result.next_args
    out = message.next_args
    out.log_id = args.log_id
    out.seq_num = args.seq_num
    if args.backlink is not None:
        out.backlink = args.backlink
    if args.skiplink is not None:
        out.skiplink = args.skiplink


def _fill_error(message: pb.PublishError, error: PandanodeError) -> None:
    # What a unary Publish would have answered: its status code, message and ErrorInfo.
    message.SetInParent()
    info = error_info(error)
    message.code = status_code_for(error).value[0]
    message.reason = info.reason
    message.message = bounded_message(error)
    message.metadata.update(info.metadata)


class IngestServicer(pb_grpc.IngestServiceServicer):
    """Serves ``pandanode.ingest.v1.IngestService``."""

    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    async def Publish(  # noqa: N802 - gRPC method name
        self, request: pb.PublishRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.PublishResponse:
        """Publish one entry; answers once it is durable."""
        try:
            result = await self._ingest.publish(request.entry, request.operation)
        except PandanodeError as err:
            await abort(context, err)
        response = pb.PublishResponse()
        _fill(response, result)
        return response

    async def PublishStream(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[pb.PublishStreamRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.PublishStreamResponse]:
        """Publish batches; one result per item, in order."""

        async def batches() -> AsyncIterator[list[tuple[bytes, bytes]]]:
            async for request in request_iterator:
                yield [(item.entry, item.operation) for item in request.items]

        try:
            async for outcomes in self._ingest.publish_stream(batches()):
                response = pb.PublishStreamResponse()
                add = response.results.add
                for outcome in outcomes:
                    if isinstance(outcome, PandanodeError):
                        _fill_error(add().error, outcome)
                    else:
                        _fill(add().ok, outcome)
                yield response
        except PandanodeError as err:
            await abort(context, err)

    async def NextArgs(  # noqa: N802 - gRPC method name
        self, request: pb.NextArgsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.NextArgsResponse:
        """Arguments for an author's next entry."""
        try:
            args = self._ingest.next_args(request.public_key, request.document_view_id)
        except PandanodeError as err:
            await abort(context, err)
        return pb.NextArgsResponse(next_args=_next_args(args))

    async def GetLogHeights(  # noqa: N802 - gRPC method name
        self, request: pb.GetLogHeightsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetLogHeightsResponse:
        """A page of the latest seq num of every (matching) log."""
        try:
            page = await asyncio.to_thread(
                self._ingest.log_heights_page,
                list(request.schema_ids),
                request.page_size,
                request.page_token,
            )
        except PandanodeError as err:
            await abort(context, err)
        response = pb.GetLogHeightsResponse(next_page_token=page.next_page_token)
        add = response.log_heights.add
        for log in page.logs:
            add(
                public_key=log.public_key,
                log_id=log.log_id,
                seq_num=log.seq_num,
                document_id=log.document_id,
                schema_id=log.schema_id,
            )
        return response

    async def ReadMissingEntries(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[pb.ReadMissingEntriesRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.ReadMissingEntriesResponse]:
        """Take the peer's have-set, then stream the entries it lacks in batches."""
        have = self._ingest.have_set()
        first: pb.ReadMissingEntriesRequest | None = None
        try:
            async for request in request_iterator:
                if first is None:
                    first = request
                for height in request.have:
                    have.add(height.public_key, height.log_id, height.seq_num)
                if request.last:
                    break
        except PandanodeError as err:
            await abort(context, err)
        if first is None:
            first = pb.ReadMissingEntriesRequest()
        batches: Iterator[list[StoredEntry]] = self._ingest.missing_entries(
            list(first.schema_ids), have, first.max_batch_items, first.max_batch_bytes
        )
        while True:
            # Blocking RocksDB reads, one batch at a time on a worker thread.
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                return
            response = pb.ReadMissingEntriesResponse()
            add = response.entries.add
            for stored in batch:
                add(
                    entry=stored.entry,
                    operation=stored.operation,
                    public_key=stored.public_key,
                    log_id=stored.log_id,
                    seq_num=stored.seq_num,
                    sequence=stored.sequence,
                )
            yield response

    async def ReadLog(  # noqa: N802 - gRPC method name
        self, request: pb.ReadLogRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.ReadLogResponse]:
        """Stream one log's entries in seq order."""
        try:
            entries = self._ingest.read_log(
                request.public_key, request.log_id, request.from_seq_num
            )
        except InvalidRequestError as err:
            await abort(context, err)
        page: list[pb.LogEntry] = []
        for stored in entries:
            page.append(
                pb.LogEntry(seq_num=stored.seq_num, entry=stored.entry, operation=stored.operation)
            )
            if len(page) >= self._ingest.settings.read_log_page:
                yield pb.ReadLogResponse(entries=page)
                page = []
        if page:
            yield pb.ReadLogResponse(entries=page)
