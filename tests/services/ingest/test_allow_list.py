"""The schema allow list (``supported_schema_ids``, aquadoggo's setting of that name): a node
with a list accepts operations of the listed schemas and of the definitions that make them, and
refuses every other schema with PERMISSION_DENIED / ``SCHEMA_NOT_SUPPORTED``, storing nothing
and serving on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from nats.js import JetStreamContext

from pandanode.core import PinnedRelationList, encode_operation
from pandanode.services.runtime.settings import Settings, SettingsError
from tests.services.support import node_settings

from .helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    Signed,
    assert_rejected,
    publish,
    publish_batches,
    stored_state,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

DENIED = grpc.StatusCode.PERMISSION_DENIED


def define(author: Author, name: str) -> tuple[list[Signed], str]:
    """The entries defining schema ``name`` (one str field ``title``), signed ahead of any
    node, and the schema id they make."""
    field = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    definition = author.create(
        SCHEMA_DEFINITION,
        {
            "description": f"the {name} schema",
            "fields": PinnedRelationList([[field.hash]]),
            "name": name,
        },
    )
    return [field, definition], f"{name}_{definition.hash}"


# The author and the schemas are made before the node, whose settings name one of them.
AUTHOR = Author()
VENUE_DEFINITIONS, VENUE = define(AUTHOR, "venue")
SPAM_DEFINITIONS, SPAM = define(AUTHOR, "spam")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A node that supports the venue schema only."""
    return node_settings(tmp_path / "data", supported_schema_ids=VENUE)


@pytest.fixture
async def defined(ingest: IngestServiceAsyncStub) -> Author:
    """Both schemas defined on the node: definitions of any schema are accepted."""
    for signed in [*VENUE_DEFINITIONS, *SPAM_DEFINITIONS]:
        await publish(ingest, signed)
    return AUTHOR


async def test_a_node_with_an_allow_list_stores_operations_of_a_listed_schema(
    ingest: IngestServiceAsyncStub, defined: Author
) -> None:
    venue = defined.create(VENUE, {"title": "Panda Hall"})
    response = await publish(ingest, venue)
    assert response.operation_id == venue.hash
    state = await stored_state(ingest)
    assert state.heights[(venue.public_key, venue.log_id)] == 1


async def test_a_node_with_an_allow_list_refuses_an_unlisted_schema_and_stores_nothing(
    ingest: IngestServiceAsyncStub, js: JetStreamContext, defined: Author
) -> None:
    spam = defined.sign_next(
        encode_operation(action="create", schema_id=SPAM, fields={"title": "buy now"})
    )
    rejected = await assert_rejected(ingest, js, spam, DENIED, "SCHEMA_NOT_SUPPORTED")
    assert "supported_schema_ids" in rejected.message
    assert rejected.metadata["schema_id"] == SPAM
    # Serving on: the listed schema still takes operations after the refusal.
    await publish(ingest, defined.create(VENUE, {"title": "after the refusal"}))


async def test_a_node_with_an_allow_list_refuses_a_system_blob_it_does_not_list(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    piece = Author().sign_next(
        encode_operation(action="create", schema_id="blob_piece_v1", fields={"data": b"x"})
    )
    await assert_rejected(ingest, js, piece, DENIED, "SCHEMA_NOT_SUPPORTED")


async def test_a_publish_stream_refuses_only_the_unlisted_items_of_a_batch(
    ingest: IngestServiceAsyncStub, defined: Author
) -> None:
    spam = defined.sign_next(
        encode_operation(action="create", schema_id=SPAM, fields={"title": "spam"})
    )
    venue = defined.create(VENUE, {"title": "in the same batch"})
    [[refused, stored]] = await publish_batches(ingest, [[spam, venue]])
    assert refused.WhichOneof("outcome") == "error"
    assert refused.error.code == DENIED.value[0]
    assert refused.error.reason == "SCHEMA_NOT_SUPPORTED"
    assert stored.WhichOneof("outcome") == "ok"
    # The refused item and the stored one were signed for the same position of a new log:
    # that position holds the stored one.
    assert (spam.log_id, spam.seq_num) == (venue.log_id, venue.seq_num)
    entries = (await stored_state(ingest)).entries[(venue.public_key, venue.log_id)]
    assert [entry for _, entry, _ in entries] == [venue.entry]


def test_an_allow_list_must_name_schema_ids_or_be_the_wildcard() -> None:
    assert Settings().supported_schemas is None
    listed = Settings(supported_schema_ids=f" {VENUE} , blob_v01").supported_schemas
    assert listed == frozenset({VENUE, "blob_v1", SCHEMA_DEFINITION, FIELD_DEFINITION})
    for bad in ("", "*," + VENUE, "not a schema id", "venue_0020"):
        with pytest.raises(SettingsError, match="supported_schema_ids"):
            Settings(supported_schema_ids=bad)
