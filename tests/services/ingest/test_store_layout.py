"""The keys ingest writes per entry: only what a read needs, and older directories still work.

Operations are indexed by document (``O``) only for schema and field definition documents (the
schema registry rebuilds schemas from them); a directory written before that, which indexes
every document's operations, is read and continued as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pandanode.core import PinnedRelationList
from pandanode.core.publish import PublishResult
from pandanode.services.ingest.ingest import Ingest
from pandanode.services.ingest.store import LogStore
from tests.services.support import node_settings

from .helpers import FIELD_DEFINITION, SCHEMA_DEFINITION, Author, Signed


@asynccontextmanager
async def running(path: Path) -> AsyncIterator[Ingest]:
    """An ingest writer on the log store at ``path`` (no announcer); closed after."""
    store = LogStore(path)
    ingest = Ingest(store, node_settings(path.parent))
    await ingest.start()
    try:
        yield ingest
    finally:
        await ingest.stop()
        store.close()


async def publish(ingest: Ingest, signed: Signed) -> PublishResult:
    return await ingest.publish(signed.entry, signed.operation)


async def define_schema(ingest: Ingest, author: Author) -> tuple[str, str]:
    """Publish a one-field schema; its schema id and the field definition's document id."""
    field = await publish(ingest, author.create(FIELD_DEFINITION, {"name": "title", "type": "str"}))
    definition = await publish(
        ingest,
        author.create(
            SCHEMA_DEFINITION,
            {
                "name": "notes",
                "description": "notes",
                "fields": PinnedRelationList([[field.operation_id]]),
            },
        ),
    )
    return f"notes_{definition.operation_id}", field.document_id


async def test_only_definition_documents_are_indexed_by_document(tmp_path: Path) -> None:
    author = Author()
    async with running(tmp_path / "ingest") as ingest:
        schema_id, field_document = await define_schema(ingest, author)
        note = await publish(ingest, author.create(schema_id, {"title": "a"}))
        store = ingest.store
        assert store.document_operation_ids(field_document) == [field_document]
        assert store.document_operation_ids(note.document_id) == []
        assert store.document_schema_id(note.document_id) == schema_id
        assert not store.document_deleted(note.document_id)
        await publish(ingest, author.delete(schema_id, note.document_id, [note.operation_id]))
        assert store.document_deleted(note.document_id)
        assert store.document_schema_id(note.document_id) == schema_id


async def test_a_directory_indexing_every_document_is_read_and_continued(tmp_path: Path) -> None:
    author = Author()
    path = tmp_path / "ingest"
    async with running(path) as ingest:
        schema_id, _ = await define_schema(ingest, author)
        note = await publish(ingest, author.create(schema_id, {"title": "a"}))
    # What older versions also wrote: the application document's operations by document.
    old = LogStore(path)
    document = bytes.fromhex(note.document_id)
    old._write({b"O" + document + bytes.fromhex(note.operation_id): b""}, sync=True)
    old.close()
    async with running(path) as ingest:
        assert ingest.schemas.get(schema_id) is not None  # rebuilt from the definitions
        update = author.update(schema_id, note.document_id, [note.operation_id], {"title": "b"})
        result = await publish(ingest, update)
        assert result.document_id == note.document_id
        assert ingest.store.document_operation_ids(note.document_id) == [note.operation_id]
        assert [e.seq_num for e in ingest.read_log(author.public_key, update.log_id)] == [1, 2]
        assert ingest.next_args(author.public_key, result.operation_id).seq_num == 3
