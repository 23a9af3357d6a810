"""Bamboo entries as p2panda uses them: layout, decoding, encoding and signing (spec §2).

Decoding applies every stateless rule of spec §2.4: canonical varu64s, seq num ≥ 1, links
present exactly as the seq num demands, a skiplink distinct from the backlink, and a valid
Ed25519 signature over all but the last 64 bytes. The entry hash is computed over the raw bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from blake3 import blake3

from .construct import slot_constructor
from .errors import EntryDecodeError, HashDecodeError, Reason, SignatureError
from .hash import HASH_LENGTH, decode_hash, hash_bytes, hash_from_hex
from .keypair import KeyPair, invalid_signature, verify_or_raise
from .lipmaa import is_skiplink_required
from .signatures import verify_batch
from .varu64 import MAX_U64, decode_varu64, encode_varu64

__all__ = [
    "SIGNATURE_LENGTH",
    "Entry",
    "decode_entry",
    "encode_entry",
    "sign_and_encode_entry",
    "verify_entries",
]

SIGNATURE_LENGTH = 64
_PUBLIC_KEY_LENGTH = 32
_SIGNED_KEY_END = 1 + _PUBLIC_KEY_LENGTH  # the public key follows the tag byte


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded, signature-checked Bamboo entry.

    Hashes, keys and the signature are lowercase hex; absent links are None.

    Attributes:
        public_key: The author's Ed25519 public key.
        log_id: The log this entry belongs to (u64).
        seq_num: Its position in the log, from 1.
        skiplink: Hash of the entry at ``lipmaa(seq_num)``, when required.
        backlink: Hash of the entry at ``seq_num - 1``, when ``seq_num > 1``.
        payload_size: Byte length of the operation.
        payload_hash: YASMF hash of the operation bytes.
        signature: The Ed25519 signature.
        hash: YASMF hash of the whole entry: the operation id of its payload.
        tag: The first byte (1 means "end of log" in Bamboo; p2panda ignores it).
        raw: The exact bytes the entry was decoded from.
    """

    public_key: str
    log_id: int
    seq_num: int
    skiplink: str | None
    backlink: str | None
    payload_size: int
    payload_hash: str
    signature: str
    hash: str
    tag: int = 0
    raw: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Decode and verify an entry; see :func:`decode_entry`."""
        return decode_entry(data)

    def to_bytes(self) -> bytes:
        """Return the entry's bytes exactly as received."""
        return self.raw


def decode_entry(data: bytes, *, verify: bool = True, entry_hash: bytes | None = None) -> Entry:
    """Decode a Bamboo entry and check every stateless rule, the signature included.

    Args:
        data: The encoded entry.
        verify: Check the Ed25519 signature (leave on unless it was checked elsewhere).
        entry_hash: ``hash_bytes(data)``, when the caller computed it already (it is not
            computed again; passing anything else gives the entry a wrong hash).

    Returns:
        The entry, with its hash.

    Raises:
        EntryDecodeError: malformed bytes or links that contradict the seq num.
        HashDecodeError: a link or the payload hash is not a YASMF hash.
        SignatureError: the signature does not verify.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < 1 + _PUBLIC_KEY_LENGTH:
        raise EntryDecodeError(
            f"could not decode entry: {size} bytes is too short for tag and public key",
            Reason.ENTRY_TOO_SHORT,
        )
    offset = 1 + _PUBLIC_KEY_LENGTH
    # One-byte varu64s (values below 248) are read inline: nearly every log id and seq num.
    if size > offset + 1 and data[offset] < 248 and data[offset + 1] < 248:
        log_id = data[offset]
        seq_num = data[offset + 1]
        offset += 2
    else:
        log_id, offset = decode_varu64(data, offset, name="log_id")
        seq_num, offset = decode_varu64(data, offset, name="seq_num")
    if seq_num < 1:
        raise EntryDecodeError(
            "entry sequence must be larger than 0 (seq_num starts at 1)", Reason.INVALID_SEQ_NUM
        )
    skiplink: str | None = None
    backlink: str | None = None
    try:
        if seq_num > 1:
            if is_skiplink_required(seq_num):
                skiplink, offset = decode_hash(data, offset, name="skiplink")
            backlink, offset = decode_hash(data, offset, name="backlink")
        if offset < size and data[offset] < 248:
            payload_size = data[offset]
            offset += 1
        else:
            payload_size, offset = decode_varu64(data, offset, name="payload_size")
        payload_hash, offset = decode_hash(data, offset, name="payload hash")
    except HashDecodeError as err:
        raise EntryDecodeError(err.message, err.reason) from None
    if size - offset < SIGNATURE_LENGTH:
        raise EntryDecodeError(
            f"could not decode signature: {size - offset} bytes left, 64 needed",
            Reason.ENTRY_TOO_SHORT,
        )
    if skiplink is not None and skiplink == backlink:
        raise EntryDecodeError("backlink and skiplink are identical", Reason.INVALID_LINKS)
    if size != offset + SIGNATURE_LENGTH:
        # p2panda checks the signature found at this offset against all bytes but the last 64,
        # so an entry with bytes after its signature never verifies.
        raise SignatureError(
            f"signature invalid: {size - offset - SIGNATURE_LENGTH} unexpected bytes follow "
            "the signature",
            Reason.INVALID_SIGNATURE,
        )
    signature = data[offset:]
    if verify:
        verify_or_raise(data[1 : 1 + _PUBLIC_KEY_LENGTH], data[:offset], signature)
    return _new_entry(
        data[1 : 1 + _PUBLIC_KEY_LENGTH].hex(),
        log_id,
        seq_num,
        skiplink,
        backlink,
        payload_size,
        payload_hash,
        signature.hex(),
        "0020" + blake3(data).hexdigest() if entry_hash is None else entry_hash.hex(),
        data[0],
        data,
    )


_new_entry = slot_constructor(Entry)


def verify_entries(entries: Sequence[Entry]) -> list[SignatureError | None]:
    """Check the signatures of entries decoded with ``verify=False``, all in one batch.

    What each entry signs is what :func:`decode_entry` checks: all its bytes but the last 64,
    the signature. The GIL is released once for the batch when the C extension is built (see
    :mod:`pandanode.core.signatures`).

    Args:
        entries: Entries as :func:`decode_entry` returns them (their ``raw`` bytes are read).

    Returns:
        One item per entry, in order: None where the signature holds, else the error
        :func:`decode_entry` raises for it (a new one per entry).

    Raises:
        ValueError: an entry without its raw bytes (one not made by :func:`decode_entry`).
    """
    signed = []
    for entry in entries:
        raw = entry.raw
        signed.append((raw[-SIGNATURE_LENGTH:], raw[:-SIGNATURE_LENGTH], raw[1:_SIGNED_KEY_END]))
    valid = verify_batch(signed)
    return [None if ok else invalid_signature() for ok in valid]


def _unsigned_bytes(
    public_key: bytes,
    log_id: int,
    seq_num: int,
    skiplink: str | None,
    backlink: str | None,
    payload: bytes,
) -> bytes:
    if not 0 <= log_id <= MAX_U64:
        raise EntryDecodeError(f"log_id {log_id} is outside 0 … 2^64−1", Reason.INVALID_LOG_ID)
    if not 1 <= seq_num <= MAX_U64:
        raise EntryDecodeError(f"seq_num {seq_num} is outside 1 … 2^64−1", Reason.INVALID_SEQ_NUM)
    parts = [b"\x00", public_key, encode_varu64(log_id), encode_varu64(seq_num)]
    if seq_num == 1:
        if backlink is not None or skiplink is not None:
            raise EntryDecodeError(
                "the first entry of a log (seq_num 1) has no backlink or skiplink",
                Reason.INVALID_LINKS,
            )
    else:
        if backlink is None:
            raise EntryDecodeError(
                f"entry at seq_num {seq_num} needs a backlink", Reason.INVALID_LINKS
            )
        if is_skiplink_required(seq_num):
            if skiplink is None:
                raise EntryDecodeError(
                    f"entry at seq_num {seq_num} needs a skiplink", Reason.INVALID_LINKS
                )
            if skiplink == backlink:
                raise EntryDecodeError("backlink and skiplink are identical", Reason.INVALID_LINKS)
            parts.append(hash_from_hex(skiplink, name="skiplink"))
        # A skiplink passed where none is required is dropped: writing it would make the entry
        # undecodable (p2panda-js 0.8.1 has exactly this bug).
        parts.append(hash_from_hex(backlink, name="backlink"))
    parts.append(encode_varu64(len(payload)))
    parts.append(hash_bytes(payload))
    assert len(parts[-1]) == HASH_LENGTH
    return b"".join(parts)


def encode_entry(
    payload: bytes,
    public_key: str,
    signature: str | bytes,
    *,
    log_id: int = 0,
    seq_num: int = 1,
    backlink: str | None = None,
    skiplink: str | None = None,
) -> bytes:
    """Encode an entry from its parts and an existing signature (no signing, no verification)."""
    key = bytes.fromhex(public_key)
    if len(key) != _PUBLIC_KEY_LENGTH:
        raise EntryDecodeError("a public key is 32 bytes", Reason.INVALID_PUBLIC_KEY)
    sig = bytes.fromhex(signature) if isinstance(signature, str) else signature
    unsigned = _unsigned_bytes(key, log_id, seq_num, skiplink, backlink, payload)
    return unsigned + sig


def sign_and_encode_entry(
    operation: bytes,
    key_pair: KeyPair,
    *,
    log_id: int = 0,
    seq_num: int = 1,
    backlink: str | None = None,
    skiplink: str | None = None,
) -> bytes:
    """Sign an operation into a Bamboo entry, like p2panda-js ``signAndEncodeEntry``.

    Args:
        operation: The encoded operation (the payload).
        key_pair: Signs the entry; its public key becomes the author.
        log_id: The log to append to.
        seq_num: The position in that log, from 1.
        backlink: Hash of the previous entry (needed when ``seq_num > 1``).
        skiplink: Hash of the entry at ``lipmaa(seq_num)``; ignored when not required.

    Returns:
        The encoded, signed entry.
    """
    unsigned = _unsigned_bytes(
        key_pair.public_key_bytes(), log_id, seq_num, skiplink, backlink, operation
    )
    return unsigned + key_pair.sign(unsigned)
