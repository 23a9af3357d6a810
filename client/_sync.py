"""A blocking wrapper around :class:`Client` for scripts and notebooks.

The async client runs on an event loop in a background thread; each method blocks until its
call is done. Iterators (listings, watches, exports) are plain iterators.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from pandanode.core.keypair import KeyPair
from pandanode.core.publish import NextArgs
from pandanode.core.schema import Schema

from ._client import DEFAULT_ADDRESS, Client
from ._models import (
    Blob,
    BulkResult,
    Change,
    Create,
    Delete,
    Document,
    NodeStatus,
    Page,
    Peer,
    Published,
    Update,
)
from ._replication import ReplicationPeer, SyncSession
from ._requests import DocumentLike, FieldTypeLike, SchemaLike

__all__ = ["SyncClient", "connect_sync"]

_T = TypeVar("_T")


class SyncClient:
    """The blocking twin of :class:`Client`; make one with :func:`connect_sync`.

    Every method has the signature and meaning of the :class:`Client` method of the same name.
    """

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop, thread: threading.Thread):
        self._client = client
        self._loop = loop
        self._thread = thread

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while True:
                try:
                    yield self._run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            closing = getattr(iterator, "aclose", None)
            if closing is not None and self._loop.is_running():
                self._run(closing())

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        if self._loop.is_closed():
            return
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> str:
        """The node's address."""
        return self._client.address

    @property
    def public_key(self) -> str | None:
        """The public key writes are signed with."""
        return self._client.public_key

    def with_key_pair(self, key_pair: KeyPair) -> SyncClient:
        """A client on the same connection that signs with ``key_pair``."""
        return SyncClient(self._client.with_key_pair(key_pair), self._loop, self._thread)

    # -- the calls ------------------------------------------------------------------------------

    def next_args(self, document: DocumentLike | None = None) -> NextArgs:
        """See :meth:`Client.next_args`."""
        return self._run(self._client.next_args(document))

    def create_schema(
        self, name: str, description: str, fields: Mapping[str, FieldTypeLike]
    ) -> str:
        """See :meth:`Client.create_schema`."""
        return self._run(self._client.create_schema(name, description, fields))

    def get_schema(self, schema: SchemaLike) -> Schema:
        """See :meth:`Client.get_schema`."""
        return self._run(self._client.get_schema(schema))

    def list_schemas(self) -> list[Schema]:
        """See :meth:`Client.list_schemas`."""
        return self._run(self._client.list_schemas())

    def create(self, schema: SchemaLike, fields: Mapping[str, object]) -> Published:
        """See :meth:`Client.create`."""
        return self._run(self._client.create(schema, fields))

    def update(self, document: DocumentLike, fields: Mapping[str, object]) -> Published:
        """See :meth:`Client.update`."""
        return self._run(self._client.update(document, fields))

    def delete(self, document: DocumentLike) -> Published:
        """See :meth:`Client.delete`."""
        return self._run(self._client.delete(document))

    def get_document(
        self,
        document_id: str | None = None,
        *,
        view_id: str | None = None,
        resolve_depth: int = 0,
        after: Published | str | None = None,
    ) -> Document:
        """See :meth:`Client.get_document`."""
        return self._run(
            self._client.get_document(
                document_id, view_id=view_id, resolve_depth=resolve_depth, after=after
            )
        )

    def documents(self, schema: SchemaLike, **options: Any) -> Iterator[Document]:
        """See :meth:`Client.documents`."""
        return self._iterate(self._client.documents(schema, **options))

    def pages(self, schema: SchemaLike, **options: Any) -> Iterator[Page]:
        """See :meth:`Client.pages`."""
        return self._iterate(self._client.pages(schema, **options))

    def watch(self, schema: SchemaLike, **options: Any) -> Iterator[Change]:
        """See :meth:`Client.watch`."""
        return self._iterate(self._client.watch(schema, **options))

    def put_blob(
        self,
        data: bytes,
        mime_type: str,
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Published:
        """See :meth:`Client.put_blob`."""
        return self._run(self._client.put_blob(data, mime_type, progress=progress))

    def get_blob(self, document_id: str | None = None, **options: Any) -> Blob:
        """See :meth:`Client.get_blob`."""
        return self._run(self._client.get_blob(document_id, **options))

    def publish_many(
        self,
        operations: Iterable[Create | Update | Delete],
        *,
        batch_size: int = 500,
        max_in_flight: int = 4,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> BulkResult:
        """See :meth:`Client.publish_many`."""
        return self._run(
            self._client.publish_many(
                operations, batch_size=batch_size, max_in_flight=max_in_flight, progress=progress
            )
        )

    def bulk_import(self, entries: Iterable[tuple[bytes, bytes]], **options: Any) -> BulkResult:
        """See :meth:`Client.bulk_import`."""
        return self._run(self._client.bulk_import(entries, **options))

    def export(self, **options: Any) -> Iterator[tuple[bytes, bytes]]:
        """See :meth:`Client.export`."""
        return self._iterate(self._client.export(**options))

    def status(self) -> NodeStatus:
        """See :meth:`Client.status`."""
        return self._run(self._client.status())

    def peers(self) -> list[Peer]:
        """See :meth:`Client.peers`."""
        return self._run(self._client.peers())

    def sync_with(self, address: str) -> SyncSession:
        """See :meth:`Client.sync_with`."""
        return self._run(self._client.sync_with(address))

    def sessions(self) -> tuple[list[SyncSession], list[ReplicationPeer]]:
        """See :meth:`Client.sessions`."""
        return self._run(self._client.sessions())


async def _next(iterator: AsyncIterator[_T]) -> _T:
    return await anext(iterator)


def connect_sync(
    address: str = DEFAULT_ADDRESS,
    *,
    key_pair: KeyPair | str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    tls: bool = False,
    tls_ca: str | os.PathLike[str] | None = None,
) -> SyncClient:
    """Open a blocking client; arguments as for :meth:`Client.connect`.

    Use it as ``with connect_sync(...) as node:`` (or call ``close()``).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pandanode-client", daemon=True)
    thread.start()

    async def make() -> Client:
        return Client.connect(
            address, key_pair=key_pair, timeout=timeout, retries=retries, tls=tls, tls_ca=tls_ca
        )

    client = asyncio.run_coroutine_threadsafe(make(), loop).result()
    return SyncClient(client, loop, thread)
