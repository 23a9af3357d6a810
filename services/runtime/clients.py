"""Who is calling: the address of a call's original client, through pass-throughs.

A call may reach a service process directly or through a pass-through of the node
(``pandanode up``'s supervisor, ``pandanode proxy``, :mod:`.proxy`) or the HTTP gateway; the
service then sees the pass-through's loopback connection, not the client. So a pass-through
names the client it serves in the metadata key :data:`CLIENT_ADDRESS_KEY`, and a service
believes that key only from a caller on loopback: a pass-through of the same machine, or a
local user (who could dial the service's own port anyway). A remote caller that sends the key
is judged by its own address; a pass-through drops the key a client sent and sets its own.
A split deployment names the networks of its proxies and services (setting
``trusted_proxies``): callers there may name their client too, and are not limited per client.

The address is the host alone (``203.0.113.7``, ``::1``, ``unix``): calls of one client come
from many ports and connections.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeAlias

__all__ = [
    "CLIENT_ADDRESS_KEY",
    "client_address",
    "client_metadata",
    "forwarded_client_metadata",
    "host_of_peer",
    "is_local",
    "is_loopback",
    "parse_networks",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_ADDRESS_KEY: Final = "x-pandanode-client-address"
"""Metadata key a pass-through names its client's address with (believed from loopback only)."""

_UNIX: Final = "unix"
_UNKNOWN: Final = "unknown"


@functools.lru_cache(maxsize=4096)  # asked on every call: parsing addresses costs µs
def host_of_peer(peer: str | None) -> str:
    """The host of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, ``unix:/path``).

    Returns:
        The host (an IP address in its canonical form, or ``unix``), or ``unknown``.
    """
    if not peer:
        return _UNKNOWN
    scheme, _, rest = peer.partition(":")
    if scheme in ("unix", "unix-abstract"):
        return _UNIX
    if scheme == "ipv6" and rest.startswith("["):
        host = rest[1 : rest.find("]")] if "]" in rest else rest[1:]
    elif scheme == "ipv4":
        host = rest.rpartition(":")[0] or rest
    else:
        return _UNKNOWN
    return _canonical(host)


@functools.lru_cache(maxsize=4096)
def _canonical(host: str) -> str:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host[:64] or _UNKNOWN
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: 127.0.0.0/8, ``::1`` or a Unix socket.

    ``host`` as :func:`host_of_peer` or :func:`client_address` give it.
    """
    if host == _UNIX:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local(host: str, trusted: Sequence[Network] = ()) -> bool:
    """Whether ``host`` is loopback or in one of the ``trusted`` networks (``trusted_proxies``)."""
    if is_loopback(host):
        return True
    if not trusted:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated IP addresses or networks (CIDR) as networks.

    Raises:
        ValueError: an item is neither.
    """
    items = (item.strip() for item in text.split(","))
    return tuple(ipaddress.ip_network(item, strict=False) for item in items if item)


def _named(metadata: Iterable[Any] | None) -> str | None:
    for key, value in metadata or ():
        if key == CLIENT_ADDRESS_KEY and isinstance(value, str) and value:
            return _canonical(value)
    return None


def client_address(context: Any, trusted: Sequence[Network] = ()) -> str:
    """The host of the client a call is made for (see the module docstring).

    Args:
        context: The call's ``grpc.aio.ServicerContext``.
        trusted: Networks besides loopback whose callers' :data:`CLIENT_ADDRESS_KEY` is
            believed (``trusted_proxies``).
    """
    own = host_of_peer(context.peer())
    if is_local(own, trusted):
        named = _named(context.invocation_metadata())
        if named is not None:
            return named
    return own


def client_metadata(host: str | None) -> tuple[tuple[str, str], ...] | None:
    """Call metadata naming ``host`` as the client a call is made for; None for no host.

    For a process of the node that calls its services for a client of its own (the HTTP
    gateway for a browser), so the client, not the process, is counted.
    """
    return ((CLIENT_ADDRESS_KEY, host),) if host else None


def forwarded_client_metadata(
    metadata: Iterable[tuple[str, Any]], context: Any, trusted: Sequence[Network] = ()
) -> tuple[tuple[str, Any], ...]:
    """``metadata`` to send upstream for the call of ``context``, naming its client.

    Any client address the caller named is replaced by :func:`client_address` of the call.
    """
    kept = tuple((key, value) for key, value in metadata if key != CLIENT_ADDRESS_KEY)
    return (*kept, (CLIENT_ADDRESS_KEY, client_address(context, trusted)))
