"""pandanode.core — the pure p2panda 0.8 protocol library (no gRPC, NATS or RocksDB).

The public surface mirrors p2panda-js 0.8.1: bytes in and out, lowercase hex strings for ids and
keys. Everything raised on purpose is a :class:`PandanodeError`; malformed bytes raise a
:class:`DecodeError`.
"""

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
from .lipmaa import is_skiplink_required, lipmaa
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
