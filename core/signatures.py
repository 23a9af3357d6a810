"""Ed25519 signatures checked in batches, with the GIL released once per batch.

:func:`verify_batch` uses the C extension ``pandanode.core._verify`` when it was built (it calls
the libsodium PyNaCl loaded, with the GIL released for the whole batch), and PyNaCl one
signature at a time otherwise; both give the same answers. Releasing the GIL per batch rather
than per signature matters where batches are checked on threads beside an event loop: ingest's
verification threads then leave the GIL to the writer for nearly all of their time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import SignatureError
from .keypair import verify_or_raise

__all__ = ["NATIVE", "SignedItem", "verify_batch", "verify_batch_pynacl"]

SignedItem = tuple[bytes, bytes, bytes]
"""One signature to check: ``(signature, message, public_key)``, of 64, any and 32 bytes."""

_SIGNATURE_LENGTH = 64
_PUBLIC_KEY_LENGTH = 32


def verify_batch_pynacl(items: Iterable[SignedItem]) -> list[bool]:
    """Check signatures with PyNaCl, one call each: what :func:`verify_batch` falls back to.

    Args:
        items: ``(signature, message, public_key)`` tuples of bytes.

    Returns:
        One bool per item, True where the signature is valid.

    Raises:
        TypeError: an item is not a tuple of three bytes objects.
        ValueError: a signature is not 64 bytes or a public key not 32 (nothing is checked).
    """
    checked = _checked_items(items)
    valid: list[bool] = []
    for signature, message, public_key in checked:
        # The per-entry check ingest uses alone: libsodium's crypto_sign_open, which checks
        # with the crypto_sign_verify_detached the extension calls.
        try:
            verify_or_raise(public_key, message, signature)
        except SignatureError:
            valid.append(False)
        else:
            valid.append(True)
    return valid


def _checked_items(items: Iterable[SignedItem]) -> list[SignedItem] | tuple[SignedItem, ...]:
    """The items, each checked as the extension checks it (same errors, same messages)."""
    if not isinstance(items, list | tuple):
        try:
            items = list(items)
        except TypeError:
            raise TypeError("items must be a list or tuple") from None
    for index, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) != 3:
            raise TypeError(
                f"item {index} must be a (signature, message, public_key) tuple, "
                f"not {type(item).__name__}"
            )
        for name, value in zip(("signature", "message", "public_key"), item, strict=True):
            if not isinstance(value, bytes):
                raise TypeError(f"item {index}: {name} must be bytes, not {type(value).__name__}")
        signature, _, public_key = item
        if len(signature) != _SIGNATURE_LENGTH:
            raise ValueError(
                f"item {index}: a signature is {_SIGNATURE_LENGTH} bytes, got {len(signature)}"
            )
        if len(public_key) != _PUBLIC_KEY_LENGTH:
            raise ValueError(
                f"item {index}: a public key is {_PUBLIC_KEY_LENGTH} bytes, got {len(public_key)}"
            )
    return items


_native: Callable[[Iterable[SignedItem]], list[bool]] | None
try:
    from ._verify import verify_many as _native
except ImportError:  # not built (no C compiler at install time): PyNaCl does it
    _native = None

NATIVE = _native is not None
"""Whether :func:`verify_batch` uses the C extension (False: the PyNaCl fallback)."""


def verify_batch(items: Iterable[SignedItem]) -> list[bool]:
    """Check Ed25519 signatures, with the GIL released once for the whole batch when it can.

    Args:
        items: ``(signature, message, public_key)`` tuples of bytes.

    Returns:
        One bool per item, True where the signature is valid (libsodium's
        ``crypto_sign_verify_detached``: small-order keys and non-canonical signatures fail).

    Raises:
        TypeError: an item is not a tuple of three bytes objects.
        ValueError: a signature is not 64 bytes or a public key not 32 (nothing is checked).
    """
    if _native is not None:
        return _native(items)
    return verify_batch_pynacl(items)
