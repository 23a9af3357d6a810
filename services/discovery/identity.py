"""The node's identity: an Ed25519 node key kept in the data directory.

The key file is a key pair file like the client's (:mod:`pandanode.core.keyfile`, aquadoggo's
format: the private key as 64 lowercase hex characters, mode 0600). It is made on first start;
the node id is its public key.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from pandanode.core.keyfile import KeyFileError, load_key_pair, save_key_pair
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
    if not path.exists():
        with contextlib.suppress(KeyFileError):  # made meanwhile by another process
            save_key_pair(KeyPair(), path)
    try:
        return load_key_pair(path)
    except KeyFileError as err:
        if path.is_file() and os.access(path, os.R_OK):
            raise NodeKeyError(f"{path} does not hold a node key: {err.message}") from None
        raise NodeKeyError(f"cannot read the node key {path}: {err.message}") from None
