"""The secret that authenticates a node's page tokens, kept in its data directory.

32 random bytes, made on the first start and kept as 64 lowercase hex characters in a file of
mode 0600, so that page tokens stay valid across restarts (and a rebuild of the query store).
Every node, and every query replica with its own data directory, has its own: a token is only
accepted by the node that issued it, unless replicas name one shared file
(``page_token_secret_file``), as query replicas behind one address do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

from pandanode.services.runtime.settings import PAGE_TOKEN_SECRET_FILE

__all__ = ["PAGE_TOKEN_SECRET_FILE", "TokenSecretError", "load_or_create_token_secret"]

_SIZE: Final = 32


class TokenSecretError(OSError):
    """The secret file exists but cannot be read or does not hold a secret."""


def load_or_create_token_secret(path: Path) -> bytes:
    """Load the page token secret at ``path``, or make one there (mode 0600) when missing.

    The file appears whole or not at all (written aside, then linked into place), and two
    processes starting at once end up with the same secret: the loser of the race reads the
    winner's.

    Raises:
        TokenSecretError: The file is unreadable or does not hold 64 hex characters.
    """
    if not path.exists():
        _create(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise TokenSecretError(f"cannot read the page token secret {path}: {err}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != _SIZE:
        raise TokenSecretError(
            f"{path} does not hold a page token secret ({2 * _SIZE} hex characters); delete it "
            "to make a new one (page tokens issued so far then become invalid)"
        )
    return secret


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(_SIZE) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
