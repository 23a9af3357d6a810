"""Dialing other nodes, in plaintext or over TLS: the ``tls://`` address scheme.

A peer address is ``host:port`` (plaintext gRPC) or ``tls://host:port`` (TLS). A node whose
public listener speaks TLS (``tls_cert_file``) advertises its address with the scheme
(discovery's node info, LAN announcements, peer exchange), so the nodes that find it dial it
over TLS; an operator writes the scheme into ``bootstrap_peers`` or ``pandanode sync`` for a
TLS node found no other way. A TLS peer's certificate is checked against ``peer_tls_ca_file``
(PEM roots; empty: the system's), and must name the host dialed (a DNS name or an IP address
in its subjectAltName).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import grpc
import grpc.aio

from .settings import Settings, SettingsError

__all__ = ["TLS_SCHEME", "PeerDialer", "advertised", "split_scheme"]

TLS_SCHEME: Final = "tls://"


def split_scheme(address: str) -> tuple[bool, str]:
    """Whether ``address`` asks for TLS, and its ``host:port`` without the scheme."""
    if address.startswith(TLS_SCHEME):
        return True, address[len(TLS_SCHEME) :]
    return False, address


def advertised(address: str, settings: Settings) -> str:
    """``address`` as other nodes should dial it: with ``tls://`` when our listener is TLS.

    An address that names its scheme already (an ``advertise_address`` an operator wrote) is
    kept.
    """
    tls = bool(settings.tls_cert_file and settings.tls_key_file)
    if not tls or address.startswith(TLS_SCHEME):
        return address
    return TLS_SCHEME + address


class PeerDialer:
    """Opens channels to peer addresses (see the module docstring).

    Args:
        settings: ``peer_tls_ca_file`` is read once, here.

    Raises:
        SettingsError: ``peer_tls_ca_file`` cannot be read or is not PEM.
    """

    def __init__(self, settings: Settings) -> None:
        roots: bytes | None = None
        if settings.peer_tls_ca_file:
            path = Path(settings.peer_tls_ca_file)
            try:
                roots = path.read_bytes()
            except OSError as err:
                raise SettingsError(
                    f"setting peer_tls_ca_file: cannot read {path}: {err.strerror or err}"
                ) from None
            if b"-----BEGIN " not in roots:
                raise SettingsError(f"setting peer_tls_ca_file: {path} is not a PEM file")
        self._credentials = grpc.ssl_channel_credentials(root_certificates=roots)

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A channel to the peer at ``address`` (``host:port`` or ``tls://host:port``)."""
        tls, target = split_scheme(address)
        if tls:
            return grpc.aio.secure_channel(target, self._credentials, options=list(options))
        return grpc.aio.insecure_channel(target, options=list(options))
