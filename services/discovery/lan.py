"""LAN discovery over UDP multicast: announce this node, hear the others.

Every ``lan_announce_interval`` seconds the node sends one datagram, a serialized
``pandanode.discovery.v1.LanAnnouncement`` (protocol tag, node id, gRPC address), to the
multicast group with TTL 1 (it never leaves the local network). Received datagrams are decoded
and checked; anything malformed is dropped with a debug log and counted. A host of ``0.0.0.0``
(a node listening on every interface) is replaced by the datagram's source address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from typing import Final

from google.protobuf.message import DecodeError

from pandanode.core.hexid import is_public_key_hex
from pandanode.discovery.v1 import discovery_pb2 as pb
from pandanode.services.runtime.addresses import split_host_port
from pandanode.services.runtime.peers import TLS_SCHEME, split_scheme

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "PROTOCOL",
    "AnnouncementError",
    "LanTransport",
    "decode_announcement",
    "encode_announcement",
    "is_unspecified_host",
    "lan_interface_for",
]

log = logging.getLogger(__name__)

PROTOCOL: Final = "pandanode-discovery/1"
MAX_DATAGRAM_BYTES: Final = 1024
_UNSPECIFIED: Final = frozenset({"", "0.0.0.0", "::", "[::]"})


class AnnouncementError(ValueError):
    """A datagram that is not a valid announcement."""


def is_unspecified_host(host: str) -> bool:
    """Whether ``host`` means "every interface" (and so says nothing about where to dial)."""
    return host in _UNSPECIFIED


def encode_announcement(node_id: str, address: str) -> bytes:
    """The datagram announcing ``node_id`` at gRPC ``address``."""
    return pb.LanAnnouncement(
        protocol=PROTOCOL, node_id=node_id, address=address
    ).SerializeToString()


def decode_announcement(data: bytes, source_host: str) -> tuple[str, str]:
    """Read an announcement datagram.

    Args:
        data: The datagram.
        source_host: The IP address it came from (stands in for an unspecified host).

    Returns:
        ``(node_id, address)``.

    Raises:
        AnnouncementError: Too long, not a ``LanAnnouncement``, another protocol, a malformed
            node id or address.
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise AnnouncementError(f"{len(data)} bytes, more than {MAX_DATAGRAM_BYTES}")
    message = pb.LanAnnouncement()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise AnnouncementError(f"not a LanAnnouncement: {err}") from None
    if message.protocol != PROTOCOL:
        raise AnnouncementError(f"protocol {message.protocol[:40]!r}, expected {PROTOCOL!r}")
    if not is_public_key_hex(message.node_id, lowercase=True):
        raise AnnouncementError(f"node id {message.node_id[:80]!r} is not 64 lowercase hex")
    tls, address = split_scheme(message.address)
    try:
        host, port = split_host_port(address, allow_empty_host=True)
    except ValueError as err:
        raise AnnouncementError(f"address {err}") from None
    if len(host) > 253:
        raise AnnouncementError(f"address {message.address[:80]!r} is not host:port")
    if is_unspecified_host(host):
        host = source_host
    return message.node_id, f"{TLS_SCHEME if tls else ''}{host}:{port}"


def lan_interface_for(advertised: str, configured: str = "") -> str:
    """The IPv4 address of the interface to announce and listen on.

    The configured one if given; the loopback interface when the advertised host is loopback
    (a node only reachable on this machine announces only to this machine); otherwise
    ``0.0.0.0``, the system's choice.
    """
    if configured:
        return configured
    host = advertised.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return "127.0.0.1" if loopback else "0.0.0.0"


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, transport: LanTransport) -> None:
        self._owner = transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._owner.received(data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        log.debug("LAN discovery socket error: %s", exc)


class LanTransport:
    """The two UDP sockets of LAN discovery: one joined to the group, one to send from.

    Args:
        group: The IPv4 multicast group.
        port: The UDP port.
        interface: IPv4 address of the interface to use (``0.0.0.0``: the system's choice).
        on_announcement: Called with ``(node_id, address)`` for every valid announcement
            (this node's own included; the caller ignores those).

    Attributes:
        dropped: How many malformed datagrams were dropped.
    """

    def __init__(
        self,
        group: str,
        port: int,
        interface: str,
        on_announcement: Callable[[str, str], None],
    ) -> None:
        self.group = group
        self.port = port
        self.interface = interface
        self._on_announcement = on_announcement
        self._receiver: asyncio.DatagramTransport | None = None
        self._sender: asyncio.DatagramTransport | None = None
        self.dropped = 0

    async def start(self) -> None:
        """Open the sockets and join the group.

        Raises:
            OSError: The group cannot be joined (no multicast-capable interface) or the port
                cannot be bound.
        """
        loop = asyncio.get_running_loop()
        membership = struct.pack(
            "4s4s", socket.inet_aton(self.group), socket.inet_aton(self.interface)
        )
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):  # several nodes on one machine share the port
                receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Bound to the group (not 0.0.0.0): only this group's datagrams arrive.
            receiver.bind((self.group, self.port))
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            receiver.setblocking(False)
        except OSError:
            receiver.close()
            raise
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            if self.interface != "0.0.0.0":
                sender.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.interface)
                )
            sender.setblocking(False)
        except OSError:
            sender.close()
            receiver.close()
            raise
        self._receiver, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self), sock=receiver
        )
        self._sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sender)

    def announce(self, node_id: str, address: str) -> None:
        """Send one announcement to the group."""
        if self._sender is not None:
            self._sender.sendto(encode_announcement(node_id, address), (self.group, self.port))

    def received(self, data: bytes, source_host: str) -> None:
        """Handle one datagram (called by the socket; public for the service's own use)."""
        try:
            node_id, address = decode_announcement(data, source_host)
        except AnnouncementError as err:
            self.dropped += 1
            log.debug("dropped a LAN datagram from %s: %s", source_host, err)
            return
        try:
            self._on_announcement(node_id, address)
        except Exception:  # an error must not close the socket (asyncio would)
            log.exception("handling the LAN announcement of %s failed", node_id)

    def close(self) -> None:
        """Leave the group and close the sockets."""
        for transport in (self._receiver, self._sender):
            if transport is not None:
                transport.close()
        self._receiver = self._sender = None
