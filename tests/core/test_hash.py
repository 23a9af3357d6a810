import pytest

from pandanode.core.errors import DecodeError, HashDecodeError, Reason
from pandanode.core.hash import decode_hash, generate_hash, hash_from_hex, is_hash_hex
from pandanode.core.ids import DocumentViewId


def test_generate_hash_matches_the_spec_example() -> None:
    assert generate_hash(bytes.fromhex("aabbcc")) == (
        "0020d5f1c831db4153ae65d0bd3edf6b88eb8f5c9985e35d5192e371f5b469eeb4c4"
    )


def test_a_hash_is_always_34_bytes_with_the_0020_header() -> None:
    for data in (b"", b"x", b"x" * 10_000):
        digest = generate_hash(data)
        assert len(digest) == 68
        assert digest.startswith("0020")


def test_decode_hash_normalises_the_unchecked_length_byte() -> None:
    raw = bytes.fromhex("0021" + "ab" * 32)
    assert decode_hash(raw) == ("0020" + "ab" * 32, 34)


def test_decode_hash_rejects_an_unknown_hash_type() -> None:
    with pytest.raises(HashDecodeError) as info:
        decode_hash(bytes.fromhex("0120" + "ab" * 32))
    assert info.value.reason == Reason.INVALID_HASH


def test_decode_hash_rejects_a_truncated_hash() -> None:
    with pytest.raises(DecodeError):
        decode_hash(bytes.fromhex("0020" + "ab" * 31))


@pytest.mark.parametrize(
    "text", ["", "0020", "0020" + "ab" * 33, "0020" + "zz" * 32, "0120" + "ab" * 32]
)
def test_hash_from_hex_rejects_malformed_text(text: str) -> None:
    assert not is_hash_hex(text) or text.startswith("01")
    with pytest.raises(HashDecodeError):
        hash_from_hex(text)


def test_document_view_id_hash_matches_the_spec_example() -> None:
    view_id = DocumentViewId.from_str(
        "00202b9b7d72931d692513cc56a75f871a4126e788247fefee50202b5619648c9be6_"
        "002035e10422bafc98ebd37ae36c473301204d1b676b873a4e9d0c4e997da4ac22e2"
    )
    assert view_id.view_hash() == (
        "0020c02d5840584c506ec13df1139eee9452b3679f624ec84183fd3ff4b96bc7c989"
    )


def test_document_view_id_rejects_unsorted_or_duplicate_ids() -> None:
    a, b = "0020" + "aa" * 32, "0020" + "bb" * 32
    with pytest.raises(HashDecodeError) as info:
        DocumentViewId((b, a))
    assert info.value.reason == Reason.INVALID_DOCUMENT_VIEW_ID
    with pytest.raises(HashDecodeError):
        DocumentViewId((a, a))
    with pytest.raises(HashDecodeError):
        DocumentViewId(())


def test_document_view_id_from_ids_sorts_and_deduplicates() -> None:
    a, b = "0020" + "aa" * 32, "0020" + "bb" * 32
    view_id = DocumentViewId.from_ids([b, a, b])
    assert view_id.ids == (a, b)
    assert str(view_id) == f"{a}_{b}"
    assert DocumentViewId.from_str(str(view_id)) == view_id
