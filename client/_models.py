"""What the client returns: documents, write receipts, changes, blobs, bulk results.

Plain frozen dataclasses holding plain Python values; none of them is a protobuf message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias

from pandanode.core.errors import PandanodeError

__all__ = [
    "Blob",
    "BulkResult",
    "Change",
    "ChangeKind",
    "Create",
    "Delete",
    "Document",
    "NodeStatus",
    "Page",
    "Peer",
    "PeerSource",
    "Published",
    "Update",
    "Value",
]

Value: TypeAlias = "bool | int | float | str | bytes | Document | list[str | Document]"
"""A field value as the client returns it.

``bool``, ``int``, ``float``, ``str`` and ``bytes`` fields are those Python values. A
``relation`` is the related document's id and a ``pinned_relation`` the pinned view id (a
``str``), or the related :class:`Document` when the read resolved relations
(``resolve_depth > 0``) and the node knows it; the two list kinds are lists of the same.
"""


@dataclass(frozen=True, slots=True)
class Document:
    """One view of a document, as the node materialized it.

    Attributes:
        id: The document id (the id of its CREATE operation).
        view_id: The document view id (``_``-joined operation ids).
        schema_id: The schema id.
        owner: Public key of the author of the CREATE.
        edited: Whether any field was last set by an UPDATE (or the document was deleted).
        deleted: Whether the document was deleted (then ``fields`` is empty).
        fields: Field name → :data:`Value`.
    """

    id: str
    view_id: str
    schema_id: str
    owner: str
    edited: bool
    deleted: bool
    fields: Mapping[str, Value] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Value:
        """Return the value of field ``name``."""
        return self.fields[name]

    def to_dict(self) -> dict[str, object]:
        """The document as JSON-ready values (bytes as hex, related documents as dicts)."""
        return {
            "document_id": self.id,
            "document_view_id": self.view_id,
            "schema_id": self.schema_id,
            "owner": self.owner,
            "edited": self.edited,
            "deleted": self.deleted,
            "fields": {name: _jsonable(value) for name, value in self.fields.items()},
        }


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Document):
        return value.to_dict()
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Published:
    """The receipt of one published operation.

    Attributes:
        operation_id: The new operation's id (the hash of its entry).
        document_id: The document it belongs to (for a CREATE, ``operation_id``).
        view_id: The document view that ends with this operation: pass it (or this receipt)
            as a pinned relation, or build the next update on it.
        schema_id: The document's schema id.
        action: ``"create"``, ``"update"`` or ``"delete"``.
        public_key: The author.
        log_id: The author's log for the document.
        seq_num: The entry's position in that log.
    """

    operation_id: str
    document_id: str
    view_id: str
    schema_id: str
    action: Literal["create", "update", "delete"]
    public_key: str
    log_id: int
    seq_num: int

    def to_dict(self) -> dict[str, object]:
        """The receipt as JSON-ready values."""
        return {
            "operation_id": self.operation_id,
            "document_id": self.document_id,
            "document_view_id": self.view_id,
            "schema_id": self.schema_id,
            "action": self.action,
            "public_key": self.public_key,
            "log_id": self.log_id,
            "seq_num": self.seq_num,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing.

    Attributes:
        documents: The documents of this page.
        next_page_token: Pass it to get the next page; empty on the last page.
        total_size: How many documents match (all pages).
    """

    documents: Sequence[Document]
    next_page_token: str
    total_size: int


ChangeKind: TypeAlias = Literal["existing", "caught_up", "created", "updated", "deleted", "left"]
"""What a :class:`Change` of a watch says: ``existing`` documents first, ``caught_up`` once, then
live ``created`` / ``updated`` / ``deleted`` changes and ``left`` (updated out of the filter). A
document that left and is updated into the filter again comes back as ``updated``: treat
``created`` and ``updated`` alike as "this is the document now"."""


@dataclass(frozen=True, slots=True)
class Change:
    """One message of a watch.

    Attributes:
        kind: See :data:`ChangeKind`.
        document: The document; None for ``caught_up``.
    """

    kind: ChangeKind
    document: Document | None


@dataclass(frozen=True, slots=True)
class Blob:
    """A downloaded blob.

    Attributes:
        data: The file's bytes.
        mime_type: Its MIME type.
        view_id: The ``blob_v1`` document view the bytes come from.
    """

    data: bytes
    mime_type: str
    view_id: str


@dataclass(frozen=True, slots=True)
class BulkResult:
    """The outcome of a bulk publish: one result per item, in input order.

    Attributes:
        results: Each item's receipt (:class:`Published`) or the error that rejected it.
        elapsed: Seconds the whole run took.
    """

    results: Sequence[Published | PandanodeError]
    elapsed: float

    @property
    def published(self) -> list[Published]:
        """The receipts of the accepted items."""
        return [r for r in self.results if isinstance(r, Published)]

    @property
    def errors(self) -> list[tuple[int, PandanodeError]]:
        """``(index, error)`` of every rejected item."""
        return [(i, r) for i, r in enumerate(self.results) if isinstance(r, PandanodeError)]

    @property
    def rate(self) -> float:
        """Accepted items per second."""
        return len(self.published) / self.elapsed if self.elapsed > 0 else 0.0

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Published | PandanodeError]:
        return iter(self.results)

    def raise_for_errors(self) -> None:
        """Raise the first item's error, if any item was rejected.

        Raises:
            PandanodeError: The first rejection, with a note saying how many there were.
        """
        errors = self.errors
        if errors:
            index, error = errors[0]
            error.add_note(f"item {index} of {len(self.results)}; {len(errors)} item(s) rejected")
            raise error


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What ``status`` found out about a node.

    Attributes:
        address: The address the client talks to.
        serving: Whether the node reports SERVING overall.
        services: Full service name → its health (``SERVING``, ``NOT_SERVING``, ``UNKNOWN``).
        latency_ms: Round trip of the health check.
        logs: How many logs the node stores (None when ingest is not served).
        entries: How many entries those logs hold.
        node_id: The node's id (None when discovery is not served).
        version: The pandanode version the node runs (None when discovery is not served).
    """

    address: str
    serving: bool
    services: Mapping[str, str]
    latency_ms: float
    logs: int | None
    entries: int | None
    node_id: str | None = None
    version: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The status as JSON-ready values."""
        return {
            "address": self.address,
            "serving": self.serving,
            "services": dict(self.services),
            "latency_ms": round(self.latency_ms, 3),
            "logs": self.logs,
            "entries": self.entries,
            "node_id": self.node_id,
            "version": self.version,
        }


PeerSource: TypeAlias = Literal["bootstrap", "lan", "exchange", "unknown"]
"""How the node found a peer: its ``bootstrap_peers`` setting, a LAN multicast announcement,
another peer's list (peer exchange); ``unknown`` for a source this client does not know."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Another node the node knows (an entry of its discovery service's peer table).

    Attributes:
        node_id: The peer's node id: the public key of its node key (hex).
        addresses: Its gRPC addresses, most recently seen first.
        source: How it was found, see :data:`PeerSource`.
        first_seen: When the node found it (again, after it was lost); timezone-aware UTC.
        last_seen: When it last answered or announced itself; timezone-aware UTC.
        reachable: Whether it answered the node's last probe.
    """

    node_id: str
    addresses: tuple[str, ...]
    source: PeerSource
    first_seen: datetime
    last_seen: datetime
    reachable: bool

    def to_dict(self) -> dict[str, object]:
        """The peer as JSON-ready values (times as ISO 8601 strings)."""
        return {
            "node_id": self.node_id,
            "addresses": list(self.addresses),
            "source": self.source,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "reachable": self.reachable,
        }


# -- operations to publish in bulk -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """A new document, for :meth:`Client.publish_many`.

    Attributes:
        schema: The schema (id string, ``SchemaId`` or ``Schema``).
        fields: Every field of the schema → its Python value.
    """

    schema: object
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Update:
    """An update, for :meth:`Client.publish_many`.

    Attributes:
        document: The document: a :class:`Document` or :class:`Published` (built on its view),
            or a document id (built on its current view).
        fields: Some of the schema's fields → their new Python values.
    """

    document: Document | Published | str
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Delete:
    """A deletion, for :meth:`Client.publish_many`.

    Attributes:
        document: As for :class:`Update`.
    """

    document: Document | Published | str
