import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pandanode.core import (
    DecodeError,
    Entry,
    EntryDecodeError,
    KeyPair,
    Reason,
    SignatureError,
    decode_entry,
    encode_entry,
    generate_hash,
    sign_and_encode_entry,
)
from pandanode.core.lipmaa import is_skiplink_required, lipmaa
from pandanode.core.varu64 import MAX_U64, encode_varu64

KEY = KeyPair("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
PAYLOAD = bytes.fromhex("112233")
H1 = "0020" + "11" * 32
H2 = "0020" + "22" * 32


def signed(unsigned: bytes, key: KeyPair = KEY) -> bytes:
    """Sign arbitrary (possibly malformed) entry bytes so only the rule under test fails."""
    return unsigned + key.sign(unsigned)


def raw_entry(
    *,
    tag: bytes = b"\x00",
    log_id: bytes = b"\x00",
    seq_num: bytes = b"\x01",
    links: bytes = b"",
    payload: bytes = PAYLOAD,
) -> bytes:
    return signed(
        tag
        + KEY.public_key_bytes()
        + log_id
        + seq_num
        + links
        + encode_varu64(len(payload))
        + bytes.fromhex(generate_hash(payload))
    )


def make_log(key: KeyPair, length: int, log_id: int = 0) -> list[bytes]:
    entries: list[bytes] = []
    hashes: dict[int, str] = {}
    for seq in range(1, length + 1):
        payload = seq.to_bytes(4, "big")
        entry = sign_and_encode_entry(
            payload,
            key,
            log_id=log_id,
            seq_num=seq,
            backlink=hashes.get(seq - 1),
            skiplink=hashes[lipmaa(seq)] if is_skiplink_required(seq) else None,
        )
        hashes[seq] = generate_hash(entry)
        entries.append(entry)
    return entries


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_spec_vectors_decode_to_their_listed_values(
    spec_vectors: dict[str, Any], name: str
) -> None:
    vector = spec_vectors[name]
    entry = decode_entry(bytes.fromhex(vector["entry"]))
    assert entry.public_key == vector["public_key"]
    assert entry.log_id == vector["log_id"]
    assert entry.seq_num == vector["seq_num"]
    assert entry.skiplink == vector.get("skiplink")
    assert entry.backlink == vector.get("backlink")
    assert entry.payload_hash == vector["payload_hash"]
    assert entry.hash == vector["entry_hash"]
    assert entry.to_bytes().hex() == vector["entry"]


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_spec_vectors_re_sign_byte_for_byte(spec_vectors: dict[str, Any], name: str) -> None:
    vector = spec_vectors[name]
    payload = bytes.fromhex(vector.get("operation") or vector["payload"])
    entry = sign_and_encode_entry(
        payload,
        KeyPair(vector["private_key"]),
        log_id=vector["log_id"],
        seq_num=vector["seq_num"],
        backlink=vector.get("backlink"),
        skiplink=vector.get("skiplink"),
    )
    assert entry.hex() == vector["entry"]


def test_encode_entry_with_an_existing_signature_reproduces_vector_a(
    spec_vectors: dict[str, Any],
) -> None:
    vector = spec_vectors["A"]
    entry = encode_entry(
        bytes.fromhex(vector["operation"]), vector["public_key"], vector["signature"]
    )
    assert entry.hex() == vector["entry"]


def test_entry_sizes_follow_the_links_present() -> None:
    log = make_log(KEY, 4)
    assert [len(entry) for entry in log] == [134, 168, 168, 202]


def test_a_long_log_decodes_with_skiplinks_where_lipmaa_demands_them() -> None:
    log = make_log(KEY, 130, log_id=300)
    hashes = {}
    for seq, raw in enumerate(log, start=1):
        entry = decode_entry(raw)
        hashes[seq] = entry.hash
        assert entry.seq_num == seq
        assert entry.log_id == 300
        assert entry.backlink == hashes.get(seq - 1)
        assert entry.skiplink == (hashes[lipmaa(seq)] if is_skiplink_required(seq) else None)


def test_a_decoded_entry_is_the_entry_its_constructor_makes_field_for_field() -> None:
    for raw in make_log(KEY, 5, log_id=7):
        entry = decode_entry(raw)
        values = {item.name: getattr(entry, item.name) for item in dataclasses.fields(Entry)}
        assert values == dataclasses.asdict(Entry(**values))
        assert entry == Entry(**values) and hash(entry) == hash(Entry(**values))


def test_an_entry_hash_passed_in_is_the_hash_decoding_computes() -> None:
    for raw in make_log(KEY, 5):
        given_hash = decode_entry(raw, entry_hash=bytes.fromhex(generate_hash(raw)))
        assert given_hash == decode_entry(raw)
        assert given_hash.hash == decode_entry(raw).hash == generate_hash(raw)


def test_decode_rejects_seq_num_zero() -> None:
    with pytest.raises(EntryDecodeError) as info:
        decode_entry(raw_entry(seq_num=b"\x00"))
    assert info.value.reason == Reason.INVALID_SEQ_NUM


def test_decode_rejects_a_non_canonical_log_id() -> None:
    with pytest.raises(EntryDecodeError) as info:
        decode_entry(raw_entry(log_id=b"\xf8\x05"))
    assert info.value.reason == Reason.NON_CANONICAL_VARU64


def test_decode_rejects_a_trailing_byte_after_the_signature() -> None:
    with pytest.raises(SignatureError) as info:
        decode_entry(raw_entry() + b"\x00")
    assert info.value.reason == Reason.INVALID_SIGNATURE


def test_decode_rejects_seq_2_without_a_backlink() -> None:
    with pytest.raises(DecodeError):
        decode_entry(raw_entry(seq_num=b"\x02"))


def test_decode_rejects_seq_1_with_a_backlink() -> None:
    entry = raw_entry(links=bytes.fromhex(H1))
    with pytest.raises(DecodeError):
        decode_entry(entry)


def test_decode_rejects_a_required_skiplink_equal_to_the_backlink() -> None:
    entry = raw_entry(seq_num=b"\x04", links=bytes.fromhex(H1) * 2)
    with pytest.raises(EntryDecodeError) as info:
        decode_entry(entry)
    assert info.value.reason == Reason.INVALID_LINKS
    assert "identical" in info.value.message


def test_decode_rejects_a_link_of_unknown_hash_type() -> None:
    with pytest.raises(EntryDecodeError) as info:
        decode_entry(raw_entry(seq_num=b"\x02", links=bytes.fromhex("0120" + "11" * 32)))
    assert info.value.reason == Reason.INVALID_HASH


def test_decode_accepts_a_link_with_length_byte_21_and_reports_it_as_0020() -> None:
    entry = decode_entry(raw_entry(seq_num=b"\x02", links=bytes.fromhex("0021" + "11" * 32)))
    assert entry.backlink == H1


@pytest.mark.parametrize("tag", [b"\x01", b"\x02", b"\xff"])
def test_decode_accepts_any_tag_byte_like_p2panda(tag: bytes) -> None:
    assert decode_entry(raw_entry(tag=tag)).tag == tag[0]


def test_decode_does_not_check_the_payload_size_against_a_payload() -> None:
    entry = decode_entry(sign_and_encode_entry(PAYLOAD, KEY))
    assert entry.payload_size == 3


def test_decode_rejects_a_signature_by_another_key() -> None:
    unsigned = sign_and_encode_entry(PAYLOAD, KEY)[:-64]
    with pytest.raises(SignatureError):
        decode_entry(unsigned + KeyPair().sign(unsigned))


def test_decode_of_every_truncation_raises_a_decode_error() -> None:
    entry = make_log(KEY, 4)[3]
    for length in range(len(entry)):
        with pytest.raises(DecodeError):
            decode_entry(entry[:length])


def test_encode_drops_a_skiplink_that_is_not_required() -> None:
    first = make_log(KEY, 1)[0]
    entry = sign_and_encode_entry(
        PAYLOAD, KEY, seq_num=2, backlink=generate_hash(first), skiplink=H2
    )
    decoded = decode_entry(entry)
    assert decoded.skiplink is None
    assert decoded.backlink == generate_hash(first)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"seq_num": 0}, Reason.INVALID_SEQ_NUM),
        ({"seq_num": MAX_U64 + 1}, Reason.INVALID_SEQ_NUM),
        ({"log_id": -1}, Reason.INVALID_LOG_ID),
        ({"seq_num": 2}, Reason.INVALID_LINKS),
        ({"seq_num": 1, "backlink": H1}, Reason.INVALID_LINKS),
        ({"seq_num": 4, "backlink": H1}, Reason.INVALID_LINKS),
        ({"seq_num": 4, "backlink": H1, "skiplink": H1}, Reason.INVALID_LINKS),
    ],
)
def test_sign_and_encode_refuses_impossible_arguments(
    kwargs: dict[str, Any], reason: Reason
) -> None:
    with pytest.raises(EntryDecodeError) as info:
        sign_and_encode_entry(PAYLOAD, KEY, **kwargs)
    assert info.value.reason == reason


def test_sign_and_encode_refuses_a_malformed_backlink() -> None:
    with pytest.raises(DecodeError):
        sign_and_encode_entry(PAYLOAD, KEY, seq_num=2, backlink="0020zz")


@given(
    log_id=st.integers(min_value=0, max_value=MAX_U64),
    seq_num=st.integers(min_value=1, max_value=MAX_U64),
    payload=st.binary(max_size=300),
)
def test_sign_then_decode_is_identity(log_id: int, seq_num: int, payload: bytes) -> None:
    backlink = H1 if seq_num > 1 else None
    skiplink = H2 if is_skiplink_required(seq_num) else None
    raw = sign_and_encode_entry(
        payload, KEY, log_id=log_id, seq_num=seq_num, backlink=backlink, skiplink=skiplink
    )
    entry = decode_entry(raw)
    assert (entry.log_id, entry.seq_num, entry.backlink, entry.skiplink) == (
        log_id,
        seq_num,
        backlink,
        skiplink,
    )
    assert entry.payload_size == len(payload)
    assert entry.payload_hash == generate_hash(payload)
    assert entry.hash == generate_hash(raw)
    assert Entry.from_bytes(raw).to_bytes() == raw


_FLIP_TARGET = make_log(KEY, 8)[7]


@given(index=st.integers(min_value=0, max_value=len(_FLIP_TARGET) - 1), bit=st.integers(0, 7))
def test_any_single_flipped_bit_is_rejected_or_changes_the_hash(index: int, bit: int) -> None:
    original = decode_entry(_FLIP_TARGET)
    flipped = bytearray(_FLIP_TARGET)
    flipped[index] ^= 1 << bit
    try:
        entry = decode_entry(bytes(flipped))
    except DecodeError:
        return
    # Every byte is signed or is the signature, so a flip must not pass unnoticed.
    assert entry.hash != original.hash


@given(st.binary(max_size=260))
def test_decode_of_arbitrary_bytes_only_raises_decode_errors(data: bytes) -> None:
    try:
        entry = decode_entry(data)
    except DecodeError:
        return
    assert entry.to_bytes() == data
