"""pandanode.core — the pure p2panda 0.8 protocol library (no gRPC, NATS or RocksDB).

The public surface mirrors p2panda-js 0.8.1: bytes in and out, lowercase hex strings for ids and
keys. Everything raised on purpose is a :class:`PandanodeError`; malformed bytes raise a
:class:`DecodeError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

# Eager: a name that is also a submodule's would be shadowed by the submodule once something
# imports it (the import system sets the package attribute), and never reach __getattr__.
from .lipmaa import is_skiplink_required, lipmaa

if TYPE_CHECKING:
    from .entry import Entry, decode_entry, encode_entry, sign_and_encode_entry
    from .errors import (
        AdminOnlyError,
        DecodeError,
        DocumentError,
        EntryDecodeError,
        HashDecodeError,
        LogIntegrityError,
        NotFoundError,
        OperationDecodeError,
        PandanodeError,
        Reason,
        SchemaError,
        SchemaIdError,
        SchemaNotFoundError,
        SchemaNotSupportedError,
        SignatureError,
        ValidationError,
    )
    from .hash import generate_hash
    from .ids import DocumentViewId
    from .keypair import KeyPair, verify_signature
    from .operation import (
        Operation,
        PinnedRelation,
        PinnedRelationList,
        Relation,
        RelationList,
        decode_operation,
        encode_operation,
    )
    from .schema_id import SchemaId, parse_schema_id

__all__ = [
    "AdminOnlyError",
    "DecodeError",
    "DocumentError",
    "DocumentViewId",
    "Entry",
    "EntryDecodeError",
    "HashDecodeError",
    "KeyPair",
    "LogIntegrityError",
    "NotFoundError",
    "Operation",
    "OperationDecodeError",
    "PandanodeError",
    "PinnedRelation",
    "PinnedRelationList",
    "Reason",
    "Relation",
    "RelationList",
    "SchemaError",
    "SchemaId",
    "SchemaIdError",
    "SchemaNotFoundError",
    "SchemaNotSupportedError",
    "SignatureError",
    "ValidationError",
    "decode_entry",
    "decode_operation",
    "encode_entry",
    "encode_operation",
    "generate_hash",
    "is_skiplink_required",
    "lipmaa",
    "parse_schema_id",
    "sign_and_encode_entry",
    "verify_signature",
]

# Imported on first use: `pandanode --version` or a client command that needs only keys must
# not pay for CBOR, entries and schemas (and whoever imports one module pays for that one).
_MODULE_OF: dict[str, str] = {
    "AdminOnlyError": ".errors",
    "DecodeError": ".errors",
    "DocumentError": ".errors",
    "DocumentViewId": ".ids",
    "Entry": ".entry",
    "EntryDecodeError": ".errors",
    "HashDecodeError": ".errors",
    "KeyPair": ".keypair",
    "LogIntegrityError": ".errors",
    "NotFoundError": ".errors",
    "Operation": ".operation",
    "OperationDecodeError": ".errors",
    "PandanodeError": ".errors",
    "PinnedRelation": ".operation",
    "PinnedRelationList": ".operation",
    "Reason": ".errors",
    "Relation": ".operation",
    "RelationList": ".operation",
    "SchemaError": ".errors",
    "SchemaId": ".schema_id",
    "SchemaIdError": ".errors",
    "SchemaNotFoundError": ".errors",
    "SchemaNotSupportedError": ".errors",
    "SignatureError": ".errors",
    "ValidationError": ".errors",
    "decode_entry": ".entry",
    "decode_operation": ".operation",
    "encode_entry": ".entry",
    "encode_operation": ".operation",
    "generate_hash": ".hash",
    "parse_schema_id": ".schema_id",
    "sign_and_encode_entry": ".entry",
    "verify_signature": ".keypair",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, __all__)
