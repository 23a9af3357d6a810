"""Key pair files: save (mode 0600) and load a private key.

The file format is aquadoggo's: the private key (the 32-byte Ed25519 seed) as 64 lowercase hex
characters and nothing else, no trailing newline. The client keeps its key pair in such a file,
and a node its node key.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from .errors import KeyFileError, ValidationError
from .keypair import KeyPair

__all__ = ["KeyFileError", "load_key_pair", "save_key_pair"]


def save_key_pair(
    key_pair: KeyPair, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write the private key to ``path``, readable and writable by the owner only (0600).

    Missing parent directories are created (mode 0700).

    Args:
        key_pair: The key pair to save.
        path: The file to write.
        overwrite: Replace an existing file (by default an existing key is never overwritten).

    Returns:
        The path written.

    Raises:
        KeyFileError: The file exists (and ``overwrite`` is false) or cannot be written.
    """
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        descriptor = os.open(target, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{target} already exists; refusing to overwrite a private key "
            "(delete it first, or pass overwrite=True / --force)"
        ) from None
    except OSError as err:
        raise KeyFileError(f"cannot write key file {target}: {err.strerror}") from None
    try:
        os.fchmod(descriptor, 0o600)  # O_CREAT's mode is not applied to an existing file
        os.write(descriptor, key_pair.private_key().encode("ascii"))
    finally:
        os.close(descriptor)
    return target


def load_key_pair(path: str | os.PathLike[str]) -> KeyPair:
    """Read a key pair from a file written by :func:`save_key_pair` (or by aquadoggo).

    Surrounding whitespace is ignored. A file that others can read is still loaded, with a
    :class:`UserWarning` (``chmod 600`` it).

    Raises:
        KeyFileError: The file is missing, unreadable, or not 64 hex characters.
    """
    source = Path(path).expanduser()
    try:
        text = source.read_text(encoding="ascii").strip()
        mode = source.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(
            f"no key file at {source}; create one with `pandanode key new`"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise KeyFileError(f"cannot read key file {source}: {err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"key file {source} is accessible by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {source}`",
            UserWarning,
            stacklevel=2,
        )
    try:
        return KeyPair(text)
    except ValidationError as err:
        raise KeyFileError(f"{source} does not hold a private key: {err.message}") from None
