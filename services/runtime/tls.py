"""TLS of the public gRPC listener: the settings ``tls_cert_file`` / ``tls_key_file`` (PEM).

With both set, the node's public address (``listen`` of ``pandanode up``, ``serve`` and
``proxy``) is bound with :func:`grpc.ssl_server_credentials`; with neither, it stays
plaintext. Clients dial it with ``--tls`` (and ``--tls-ca FILE`` for a CA of their own).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import grpc
import grpc.aio

from .settings import Settings, SettingsError

__all__ = ["bind", "server_credentials", "tls_enabled"]

log = logging.getLogger(__name__)


def tls_enabled(settings: Settings) -> bool:
    """Whether the public listener speaks TLS (both files set)."""
    return bool(settings.tls_cert_file and settings.tls_key_file)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The server credentials of the settings' certificate and key; None without TLS.

    A key file others can read is used, with a warning (its contents are never logged).

    Raises:
        SettingsError: a file cannot be read.
    """
    if not tls_enabled(settings):
        return None
    chain = _read("tls_cert_file", Path(settings.tls_cert_file))
    key_path = Path(settings.tls_key_file)
    key = _read("tls_key_file", key_path)
    if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("pandanode: TLS key file %s can be read by other users; chmod 600 it", key_path)
    return grpc.ssl_server_credentials([(key, chain)])


def bind(server: grpc.aio.Server, address: str, settings: Settings) -> int:
    """Bind ``server`` to ``address``, with TLS when the settings say so; the port (0: failed).

    Raises:
        SettingsError: a TLS file cannot be read.
    """
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError:
        return 0


def _read(name: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SettingsError(f"setting {name}: cannot read {path}: {err.strerror or err}") from None
    if b"-----BEGIN " not in data:
        raise SettingsError(f"setting {name}: {path} is not a PEM file")
    return data
