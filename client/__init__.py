"""pandanode.client — a thin client of a pandanode node, and the CLI's engine.

Sign locally, publish, read typed documents::

    from pandanode.client import Client, load_key_pair

    async with Client.connect("127.0.0.1:2020", key_pair=load_key_pair("key")) as node:
        venue = await node.create_schema("venue", "A place", {"name": "str", "seats": "int"})
        hall = await node.create(venue, {"name": "Panda Hall", "seats": 120})
        await node.update(hall, {"seats": 150})
        print(await node.get_document(hall.document_id, after=hall))

``connect_sync`` gives the same calls without ``await``. Errors are pandanode's own exception
classes (:mod:`pandanode.core.errors`: ``SchemaError``, ``LogIntegrityError``, …) whether the
client caught the problem before sending or the node rejected the entry, plus
:class:`NodeUnavailableError` (a ``ConnectionError``), :class:`DeadlineExceededError` (a
``TimeoutError``) and :class:`NotServedError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pandanode.core.lazy import lazy_exports

if TYPE_CHECKING:
    from pandanode.core.errors import (
        AdminOnlyError,
        DecodeError,
        DocumentError,
        LogIntegrityError,
        NotFoundError,
        PandanodeError,
        SchemaError,
        SchemaNotFoundError,
        SchemaNotSupportedError,
        ValidationError,
    )
    from pandanode.core.keypair import KeyPair
    from pandanode.core.schema import FieldType, Schema

    from ._client import DEFAULT_ADDRESS, Client
    from ._errors import (
        DeadlineExceededError,
        InvalidRequestError,
        KeyFileError,
        LimitExceededError,
        NodeUnavailableError,
        NotServedError,
        ResourceNotFoundError,
        RpcError,
    )
    from ._keys import default_key_file, generate_key_pair, load_key_pair, save_key_pair
    from ._models import (
        Blob,
        BulkResult,
        Change,
        ChangeKind,
        Create,
        Delete,
        Document,
        NodeStatus,
        Page,
        Peer,
        Published,
        Update,
        Value,
    )
    from ._replication import ReplicationPeer, SyncSession
    from ._requests import (
        DocumentLike,
        FieldTypeLike,
        SchemaLike,
        pinned_relation,
        pinned_relation_list,
        relation,
        relation_list,
    )
    from ._sync import SyncClient, connect_sync

__all__ = [
    "AdminOnlyError",
    "DEFAULT_ADDRESS",
    "Blob",
    "BulkResult",
    "Change",
    "ChangeKind",
    "Client",
    "Create",
    "DeadlineExceededError",
    "DecodeError",
    "Delete",
    "Document",
    "DocumentError",
    "DocumentLike",
    "FieldType",
    "FieldTypeLike",
    "InvalidRequestError",
    "KeyFileError",
    "KeyPair",
    "LimitExceededError",
    "LogIntegrityError",
    "NodeStatus",
    "NodeUnavailableError",
    "NotFoundError",
    "NotServedError",
    "Page",
    "PandanodeError",
    "Peer",
    "ReplicationPeer",
    "SyncSession",
    "Published",
    "ResourceNotFoundError",
    "RpcError",
    "Schema",
    "SchemaError",
    "SchemaLike",
    "SchemaNotFoundError",
    "SchemaNotSupportedError",
    "SyncClient",
    "Update",
    "ValidationError",
    "Value",
    "connect_sync",
    "default_key_file",
    "generate_key_pair",
    "load_key_pair",
    "pinned_relation",
    "pinned_relation_list",
    "relation",
    "relation_list",
    "save_key_pair",
]

# Imported on first use, so `pandanode key new` or `--help` need not load gRPC and protobuf.
_MODULE_OF: dict[str, str] = {
    "ReplicationPeer": "._replication",
    "SyncSession": "._replication",
    "DEFAULT_ADDRESS": "._client",
    "Blob": "._models",
    "BulkResult": "._models",
    "Change": "._models",
    "ChangeKind": "._models",
    "Client": "._client",
    "Create": "._models",
    "DeadlineExceededError": "._errors",
    "DecodeError": "pandanode.core.errors",
    "Delete": "._models",
    "Document": "._models",
    "DocumentError": "pandanode.core.errors",
    "DocumentLike": "._requests",
    "FieldType": "pandanode.core.schema",
    "FieldTypeLike": "._requests",
    "InvalidRequestError": "._errors",
    "KeyFileError": "._errors",
    "KeyPair": "pandanode.core.keypair",
    "LimitExceededError": "._errors",
    "LogIntegrityError": "pandanode.core.errors",
    "NodeStatus": "._models",
    "NodeUnavailableError": "._errors",
    "NotFoundError": "pandanode.core.errors",
    "NotServedError": "._errors",
    "Page": "._models",
    "PandanodeError": "pandanode.core.errors",
    "Peer": "._models",
    "Published": "._models",
    "ResourceNotFoundError": "._errors",
    "RpcError": "._errors",
    "Schema": "pandanode.core.schema",
    "SchemaError": "pandanode.core.errors",
    "SchemaLike": "._requests",
    "SchemaNotFoundError": "pandanode.core.errors",
    "SchemaNotSupportedError": "pandanode.core.errors",
    "AdminOnlyError": "pandanode.core.errors",
    "SyncClient": "._sync",
    "Update": "._models",
    "ValidationError": "pandanode.core.errors",
    "Value": "._models",
    "connect_sync": "._sync",
    "default_key_file": "._keys",
    "generate_key_pair": "._keys",
    "load_key_pair": "._keys",
    "pinned_relation": "._requests",
    "pinned_relation_list": "._requests",
    "relation": "._requests",
    "relation_list": "._requests",
    "save_key_pair": "._keys",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, __all__)
