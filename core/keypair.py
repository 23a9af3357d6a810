"""Ed25519 key pairs and signatures (spec §1.2), mirroring p2panda-js ``KeyPair``."""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.signing

from .errors import Reason, SignatureError, ValidationError

__all__ = ["KeyPair", "verify_signature"]


class KeyPair:
    """An Ed25519 key pair. ``KeyPair()`` makes a new one; ``KeyPair(hex)`` loads a private key.

    The private key is the 32-byte seed, written as 64 hex characters, as p2panda stores it.
    """

    __slots__ = ("_public", "_signing")

    def __init__(self, private_key: str | None = None) -> None:
        if private_key is None:
            self._signing = nacl.signing.SigningKey.generate()
        else:
            try:
                seed = bytes.fromhex(private_key)
            except ValueError:
                seed = b""
            if len(seed) != 32:
                raise ValidationError(
                    "a private key is 64 hex characters (a 32-byte Ed25519 seed)",
                    Reason.INVALID_PRIVATE_KEY,
                )
            self._signing = nacl.signing.SigningKey(seed)
        self._public = bytes(self._signing.verify_key)

    def public_key(self) -> str:
        """Return the public key as 64 lowercase hex characters."""
        return self._public.hex()

    def private_key(self) -> str:
        """Return the private key (seed) as 64 lowercase hex characters."""
        return bytes(self._signing).hex()

    def public_key_bytes(self) -> bytes:
        """Return the raw 32-byte public key."""
        return self._public

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._signing.sign(data).signature

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key()!r})"


def verify_signature(public_key: str | bytes, data: bytes, signature: str | bytes) -> bool:
    """Check an Ed25519 signature, like p2panda-js ``verifySignature``.

    Args:
        public_key: 32 bytes, or 64 hex characters.
        data: The signed bytes.
        signature: 64 bytes, or 128 hex characters.

    Returns:
        True when the signature is valid, False otherwise (also for malformed keys or signatures).
    """
    try:
        key = bytes.fromhex(public_key) if isinstance(public_key, str) else public_key
        sig = bytes.fromhex(signature) if isinstance(signature, str) else signature
        if len(key) != 32 or len(sig) != 64:
            return False
        nacl.signing.VerifyKey(key).verify(data, sig)
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError):
        return False
    return True


def verify_or_raise(public_key: bytes, data: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature and raise :class:`SignatureError` when it does not hold.

    Args:
        public_key: The raw 32-byte key.
        data: The signed bytes.
        signature: The raw 64-byte signature.
    """
    # The libsodium call VerifyKey.verify makes, without building a key object per entry.
    try:
        if len(public_key) == 32 and len(signature) == 64:
            nacl.bindings.crypto_sign_open(signature + data, public_key)
            return
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError):
        pass
    raise invalid_signature()


def invalid_signature() -> SignatureError:
    """Return the error an entry whose signature does not verify is rejected with.

    Built here only, so that an entry checked alone and one checked in a batch are rejected
    alike; a new error each time, as a caller may add details to it.
    """
    return SignatureError(
        "signature invalid: the entry was not signed by the private key of its public key "
        "(or its bytes were changed after signing)",
        Reason.INVALID_SIGNATURE,
    )
