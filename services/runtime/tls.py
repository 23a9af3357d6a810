"""TLS of the gRPC listeners and of the calls between services.

Public: the settings ``tls_cert_file`` / ``tls_key_file`` (PEM). With both set, the node's
public address (``listen`` of ``pandanode up``, ``serve`` and ``proxy``) is bound with
:func:`grpc.ssl_server_credentials`; with neither, it stays plaintext. Clients dial it with
``--tls`` (and ``--tls-ca FILE`` for a CA of their own).

Internal (mutual TLS between the services of a split deployment): ``internal_tls_cert_file``,
``internal_tls_key_file`` and ``internal_tls_ca_file``. With all three set, a service's listener
(``serve``) takes only clients presenting a certificate the CA signed
(:func:`bind` with ``internal=True``), and the calls of one service to another
(:func:`internal_dial`: replication to ingest, the gateway to ingest and query, ``pandanode
proxy`` to its routes) present the service's certificate and accept only servers the CA signed.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from .dial import Dial
from .settings import Settings, SettingsError

__all__ = [
    "bind",
    "internal_channel_credentials",
    "internal_dial",
    "internal_server_credentials",
    "internal_tls_enabled",
    "server_credentials",
    "tls_enabled",
]

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


def internal_tls_enabled(settings: Settings) -> bool:
    """Whether the services of a split deployment speak mutual TLS (all three files set)."""
    return bool(
        settings.internal_tls_cert_file
        and settings.internal_tls_key_file
        and settings.internal_tls_ca_file
    )


def _internal_files(settings: Settings) -> tuple[bytes, bytes, bytes]:
    chain = _read("internal_tls_cert_file", Path(settings.internal_tls_cert_file))
    key_path = Path(settings.internal_tls_key_file)
    key = _read("internal_tls_key_file", key_path)
    if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "pandanode: internal TLS key file %s can be read by other users; chmod 600 it",
            key_path,
        )
    ca = _read("internal_tls_ca_file", Path(settings.internal_tls_ca_file))
    return chain, key, ca


def internal_server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """A service listener's mutual-TLS credentials (client certificate required); None if off.

    Raises:
        SettingsError: a file cannot be read.
    """
    if not internal_tls_enabled(settings):
        return None
    chain, key, ca = _internal_files(settings)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=True
    )


def internal_channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """The credentials a service calls another with (its certificate, the CA); None if off.

    Raises:
        SettingsError: a file cannot be read.
    """
    if not internal_tls_enabled(settings):
        return None
    chain, key, ca = _internal_files(settings)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=chain
    )


def internal_dial(settings: Settings, *, plaintext: Collection[str] = ()) -> Dial:
    """How a service dials the other services of its deployment.

    With internal TLS on, channels present the service's certificate and trust only the
    internal CA; an address in ``plaintext`` (the process's own loopback port) and every
    address with internal TLS off are dialled plainly.

    Raises:
        SettingsError: a file cannot be read (at once, not at the first call).
    """
    credentials = internal_channel_credentials(settings)
    own = frozenset(plaintext)

    def dial(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        if credentials is None or address in own:
            return grpc.aio.insecure_channel(address, options=list(options))
        return grpc.aio.secure_channel(address, credentials, options=list(options))

    return dial


def bind(
    server: grpc.aio.Server, address: str, settings: Settings, *, internal: bool = False
) -> int:
    """Bind ``server`` to ``address``, with TLS when the settings say so; the port (0: failed).

    Args:
        server: The server.
        address: ``host:port``.
        settings: The TLS settings.
        internal: A service's listener in a split deployment (``serve``): with internal TLS on
            it takes only clients with a certificate of the internal CA (mutual TLS), which
            then wins over ``tls_cert_file``; public TLS, or plaintext, otherwise.

    Raises:
        SettingsError: a TLS file cannot be read.
    """
    credentials = internal_server_credentials(settings) if internal else None
    if credentials is None:
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
