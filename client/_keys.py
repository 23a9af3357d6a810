"""Key pair files: where the CLI keeps one, generate, save (mode 0600), load.

The file format is aquadoggo's (see :mod:`pandanode.core.keyfile`, which saves and loads it).
The private key never leaves this machine: the client only ever sends public keys and signed
entries.
"""

from __future__ import annotations

import os
from pathlib import Path

from pandanode.core.keyfile import load_key_pair, save_key_pair
from pandanode.core.keypair import KeyPair

__all__ = ["default_key_file", "generate_key_pair", "load_key_pair", "save_key_pair"]


def default_key_file() -> Path:
    """Where the CLI keeps the key pair unless told otherwise.

    ``$PANDANODE_KEY_FILE`` if set, else ``$XDG_CONFIG_HOME/pandanode/private-key`` (with
    ``~/.config`` when ``XDG_CONFIG_HOME`` is unset).
    """
    explicit = os.environ.get("PANDANODE_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pandanode" / "private-key"


def generate_key_pair() -> KeyPair:
    """Return a new random Ed25519 key pair."""
    return KeyPair()
