"""The NATS JetStream connection every service shares, and the stream the events live in."""

from __future__ import annotations

import asyncio
import logging
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from .errors import UnavailableError
from .events import DUPLICATE_WINDOW_SECONDS, STREAM_NAME, STREAM_SUBJECTS

__all__ = ["Bus", "connect_bus"]

log = logging.getLogger(__name__)


class Bus:
    """A NATS connection with JetStream and the ``PANDANODE`` stream in place."""

    def __init__(self, client: Client, js: JetStreamContext) -> None:
        self.client = client
        self.js = js

    async def close(self) -> None:
        """Flush and close the connection."""
        if not self.client.is_closed:
            try:
                await self.client.drain()
            except Exception:
                await self.client.close()


async def connect_bus(url: str, *, name: str = "pandanode", timeout: float = 20.0) -> Bus:
    """Connect to NATS and make sure the event stream exists; waits until JetStream answers.

    Raises:
        UnavailableError: NATS or JetStream did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = await nats.connect(
                url,
                name=name,
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
        except Exception as err:
            last_error = err
            await asyncio.sleep(0.1)  # poll: NATS is starting
            continue
        js = client.jetstream()
        config = StreamConfig(
            name=STREAM_NAME,
            subjects=list(STREAM_SUBJECTS),
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )
        while time.monotonic() < deadline:
            try:
                try:
                    await js.add_stream(config)
                except BadRequestError:
                    await js.update_stream(config)
                return Bus(client, js)
            except Exception as err:
                last_error = err
                await asyncio.sleep(0.1)  # poll: JetStream is starting
        await client.close()
    raise UnavailableError(f"NATS JetStream at {url} is unavailable: {last_error}")
