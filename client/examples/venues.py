"""Venues and events with pictures: a tiny app on pandanode.client.

Start a node (``make run``), then::

    .venv/bin/python -m pandanode.client.examples.venues [--node 127.0.0.1:2020]

It defines two schemas (venues with a picture, events at a venue), uploads a picture as a blob,
creates a few venues and events, lets a second person update an event, cancels one, and —
when the node serves the query service — lists upcoming events with a filter and an order and
downloads the picture again.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from collections.abc import Sequence

from pandanode.client import (
    DEFAULT_ADDRESS,
    KeyPair,
    NotServedError,
    Published,
    SyncClient,
    connect_sync,
    relation,
)

__all__ = ["Created", "main", "run", "tiny_png"]


def tiny_png(red: int, green: int, blue: int) -> bytes:
    """A valid 1×1 PNG of one colour (so the example needs no files)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, green, blue]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


class Created:
    """What :func:`run` made, for callers (and tests) to look at."""

    def __init__(self) -> None:
        self.venue_schema = ""
        self.event_schema = ""
        self.picture: Published | None = None
        self.venues: list[Published] = []
        self.events: list[Published] = []
        self.listed: list[str] | None = None


def run(node: SyncClient, say: bool = True) -> Created:
    """Build the little world on ``node`` (a client with a key pair)."""
    made = Created()

    def show(text: str) -> None:
        if say:
            print(text)

    made.venue_schema = node.create_schema(
        "venue",
        "A place where events happen",
        {"name": "str", "city": "str", "capacity": "int", "picture": relation("blob_v1")},
    )
    made.event_schema = node.create_schema(
        "event",
        "Something happening at a venue",
        {
            "title": "str",
            "starts_at": "int",  # unix seconds
            "price": "float",
            "sold_out": "bool",
            "venue": relation(made.venue_schema),
        },
    )
    show(f"schemas: {made.venue_schema}\n         {made.event_schema}")

    made.picture = node.put_blob(tiny_png(250, 180, 40), "image/png")
    show(f"picture: blob {made.picture.document_id}")

    for name, city, capacity in [("Panda Hall", "Berlin", 300), ("Bamboo Club", "Hamburg", 80)]:
        venue = node.create(
            made.venue_schema,
            {"name": name, "city": city, "capacity": capacity, "picture": made.picture},
        )
        made.venues.append(venue)
        show(f"venue:   {name} → {venue.document_id}")

    plans = [
        ("Launch party", 1_767_225_600, 12.5, made.venues[0]),
        ("Jazz night", 1_767_312_000, 20, made.venues[1]),
        ("Hack day", 1_767_398_400, 0, made.venues[0]),
    ]
    for title, starts_at, price, venue in plans:
        event = node.create(
            made.event_schema,
            {
                "title": title,
                "starts_at": starts_at,
                "price": price,
                "sold_out": False,
                "venue": venue,
            },
        )
        made.events.append(event)
        show(f"event:   {title} → {event.document_id}")

    # A second person (another key pair) marks the jazz night sold out.
    friend = node.with_key_pair(KeyPair())
    update = friend.update(made.events[1], {"sold_out": True})
    show(f"update:  sold out, by {update.public_key[:12]}… (log {update.log_id})")
    cancelled = node.delete(made.events[2])
    show(f"delete:  {cancelled.document_id} cancelled")

    try:
        upcoming = node.documents(
            made.event_schema,
            filter={"sold_out": False, "price__lt": 50},
            order_by="starts_at",
            after=cancelled,
        )
        made.listed = [str(event["title"]) for event in upcoming]
        show(f"upcoming, not sold out: {', '.join(made.listed)}")
        blob = node.get_blob(made.picture.document_id)
        show(f"picture downloaded: {len(blob.data)} bytes of {blob.mime_type}")
    except NotServedError:
        show("(this node does not serve queries yet; listing skipped)")
    return made


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example against a node."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--node", default=DEFAULT_ADDRESS, help="gRPC address (%(default)s)")
    args = parser.parse_args(argv)
    with connect_sync(args.node, key_pair=KeyPair()) as node:
        run(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
