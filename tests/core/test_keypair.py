import pytest

from pandanode.core import KeyPair, PandanodeError, Reason, verify_signature

PEER_PRIVATE_KEY = "799faf7a1fa47c54fac705f30d3c4d80c40efb562da19315fabefcc995a228a1"
PEER_PUBLIC_KEY = "2e4bff1b62ecc26afbb83b12b54086d4b9aaf009527b0cebe17cbfdf8092157a"


def test_key_pair_from_a_private_key_derives_the_spec_public_key() -> None:
    key_pair = KeyPair(PEER_PRIVATE_KEY)
    assert key_pair.public_key() == PEER_PUBLIC_KEY
    assert key_pair.private_key() == PEER_PRIVATE_KEY


def test_new_key_pairs_differ_and_round_trip_through_hex() -> None:
    first, second = KeyPair(), KeyPair()
    assert first.public_key() != second.public_key()
    assert KeyPair(first.private_key()).public_key() == first.public_key()


@pytest.mark.parametrize("private_key", ["", "abc", "zz" * 32, "ab" * 31, "ab" * 33])
def test_key_pair_rejects_malformed_private_keys(private_key: str) -> None:
    with pytest.raises(PandanodeError) as info:
        KeyPair(private_key)
    assert info.value.reason == Reason.INVALID_PRIVATE_KEY


def test_signatures_verify_and_tampering_is_detected() -> None:
    key_pair = KeyPair()
    signature = key_pair.sign(b"hello")
    assert verify_signature(key_pair.public_key(), b"hello", signature.hex())
    assert not verify_signature(key_pair.public_key(), b"hellO", signature.hex())
    assert not verify_signature(KeyPair().public_key(), b"hello", signature)
    assert not verify_signature("not hex", b"hello", signature)
    assert not verify_signature(key_pair.public_key(), b"hello", "00" * 63)


def test_key_pair_repr_never_shows_the_private_key() -> None:
    key_pair = KeyPair()
    assert key_pair.private_key() not in repr(key_pair)
    assert key_pair.public_key() in repr(key_pair)
