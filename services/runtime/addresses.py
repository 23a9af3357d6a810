"""``host:port`` addresses: the one parser of the settings, flags, routes and peer addresses."""

from __future__ import annotations

__all__ = ["split_host_port"]


def split_host_port(
    address: str, *, allow_port_zero: bool = False, allow_empty_host: bool = False
) -> tuple[str, int]:
    """Split ``host:port`` at its last colon; the host as written (``[::1]`` keeps brackets).

    Args:
        address: The address to split.
        allow_port_zero: Accept port 0 (a listen address: the system picks a free port).
        allow_empty_host: Accept ``:port`` (the host is filled in from elsewhere).

    Returns:
        The host and the port, 1 to 65535 (0 too where allowed).

    Raises:
        ValueError: ``address`` is not ``host:port`` (the message quotes at most 80
            characters of it).
    """
    host, colon, port = address.rpartition(":")
    lowest = 0 if allow_port_zero else 1
    if (
        not colon
        or not (host or allow_empty_host)
        or not (port.isascii() and port.isdigit())
        or not lowest <= int(port) <= 65535
    ):
        raise ValueError(f"{address[:80]!r} is not host:port")
    return host, int(port)
