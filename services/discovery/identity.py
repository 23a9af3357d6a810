"""The node's identity: an Ed25519 node key kept in the data directory.

The key file has the format of the client's key files (and aquadoggo's): the private key as 64
lowercase hex characters, mode 0600. It is made on first start; the node id is its public key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pandanode.core.errors import ValidationError
from pandanode.core.keypair import KeyPair

__all__ = ["NODE_KEY_FILE", "NodeKeyError", "load_or_create_node_key"]

NODE_KEY_FILE: Final = "node.key"


class NodeKeyError(OSError):
    """The node key file exists but cannot be read or does not hold a private key."""


def load_or_create_node_key(path: Path) -> KeyPair:
    """Load the node key at ``path``, or make a new one there (mode 0600) when it is missing.

    Two processes starting at once on one data directory end up with the same key: the file is
    created exclusively, and the loser of the race reads the winner's.

    Raises:
        NodeKeyError: The file is unreadable or does not hold 64 hex characters.
    """
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    key_pair = KeyPair()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path)
    try:
        os.write(descriptor, key_pair.private_key().encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return key_pair


def _load(path: Path) -> KeyPair:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise NodeKeyError(f"cannot read the node key {path}: {err}") from None
    try:
        return KeyPair(text)
    except ValidationError as err:
        raise NodeKeyError(f"{path} does not hold a node key: {err.message}") from None
