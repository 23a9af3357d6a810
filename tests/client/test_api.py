"""The public surface of pandanode.client is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import pandanode.client as client

EXPORTED = {
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
}

CLIENT_METHODS = {
    "address",
    "aclose",
    "bulk_import",
    "connect",
    "create",
    "create_schema",
    "delete",
    "documents",
    "export",
    "get_blob",
    "get_document",
    "get_schema",
    "key_pair",
    "list_schemas",
    "next_args",
    "pages",
    "peers",
    "public_key",
    "publish_many",
    "put_blob",
    "sessions",
    "status",
    "sync_with",
    "update",
    "watch",
    "with_key_pair",
}


def test_exported_names_are_pinned() -> None:
    assert set(client.__all__) == EXPORTED
    assert sorted(client.__all__) == sorted(set(client.__all__)), "a name is exported twice"
    for name in client.__all__:
        assert hasattr(client, name), name


def test_client_methods_are_pinned() -> None:
    public = {name for name in dir(client.Client) if not name.startswith("_")}
    assert public == CLIENT_METHODS


def test_sync_client_mirrors_the_async_client() -> None:
    sync = {name for name in dir(client.SyncClient) if not name.startswith("_")}
    assert sync == (CLIENT_METHODS - {"aclose", "connect", "key_pair"}) | {"close"}


def test_errors_are_the_core_classes() -> None:
    from pandanode import core

    assert client.SchemaNotFoundError is core.SchemaNotFoundError
    assert client.LogIntegrityError is core.LogIntegrityError
    assert issubclass(client.NodeUnavailableError, ConnectionError)
    assert issubclass(client.NodeUnavailableError, client.PandanodeError)
    assert issubclass(client.DeadlineExceededError, TimeoutError)
