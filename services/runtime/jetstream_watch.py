"""Whether an embedded nats-server has switched JetStream off (a full disk), for the supervisor.

In the runtime because it asks NATS itself (``$JS.API.INFO``), and only the runtime uses nats-py.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nats
import nats.errors

from .nats_server import EmbeddedNats

__all__ = ["JETSTREAM_OFF_GRACE", "JETSTREAM_PROBE_INTERVAL", "JetStreamWatch"]

# Seconds between two JetStream probes, and how long JetStream must stay off (answering that
# it is not enabled) before nats-server counts as broken: it is off for a moment at each start.
JETSTREAM_PROBE_INTERVAL = 1.0
JETSTREAM_OFF_GRACE = 3.0
# What nats-server logs when a write of its store hits a full disk; it then switches JetStream
# off (handleOutOfSpace) until it is restarted.
_OUT_OF_SPACE_MARKS = ("no space left", "out of storage", "resources, will be disabled")


class JetStreamWatch:
    """Tells whether the embedded nats-server has switched JetStream off.

    nats-server switches JetStream off for good when a write of its store fails for lack of
    space, and says so in its log (when the log can still be written); a probe
    (``$JS.API.INFO``) that keeps being answered "not enabled" (or by nobody) tells it too.
    """

    def __init__(self) -> None:
        self.reason = ""
        self._client: Any = None
        self._log_offset = -1
        self._off_since: float | None = None
        self._next_probe = 0.0

    @property
    def broken(self) -> bool:
        """Whether JetStream was found off (until :meth:`reset`)."""
        return bool(self.reason)

    def reset(self) -> None:
        """Forget what was found: nats-server is being restarted."""
        self.reason = ""
        self._log_offset = -1
        self._off_since = None
        self._next_probe = time.monotonic() + JETSTREAM_OFF_GRACE

    async def check(self, nats: EmbeddedNats) -> bool:
        """Look (at most once per :data:`JETSTREAM_PROBE_INTERVAL`); True if JetStream is off."""
        if self.reason:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + JETSTREAM_PROBE_INTERVAL
        logged = self._log_says_out_of_space(nats.store_dir / "nats-server.log")
        if logged:
            self.reason = logged
            return True
        off = await self._probe(nats.url)
        if not off:
            self._off_since = None
            return False
        if self._off_since is None:
            self._off_since = now
        if now - self._off_since >= JETSTREAM_OFF_GRACE:
            self.reason = off
        return self.broken

    def _log_says_out_of_space(self, path: Path) -> str:
        try:
            with path.open("rb") as log_file:
                size = log_file.seek(0, os.SEEK_END)
                if self._log_offset < 0 or size < self._log_offset:
                    # Lines written before this server started do not count.
                    self._log_offset = size
                    return ""
                log_file.seek(self._log_offset)
                text = log_file.read(size - self._log_offset).decode(errors="replace")
                self._log_offset = size
        except OSError:
            return ""
        for line in text.splitlines():
            if any(mark in line.lower() for mark in _OUT_OF_SPACE_MARKS):
                return line.strip()[-200:]
        return ""

    async def _probe(self, url: str) -> str:
        """Why JetStream is off, or empty when it answers (or NATS cannot be asked now)."""
        try:
            if self._client is None or self._client.is_closed:
                self._client = await nats.connect(
                    url,
                    name="pandanode-supervisor",
                    connect_timeout=1,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=_quiet,
                )
            reply = await self._client.request("$JS.API.INFO", b"", timeout=2.0)
        except nats.errors.NoRespondersError:
            return "JetStream does not answer"
        except Exception:
            return ""  # NATS is away or busy: its exit is watched, and the next probe asks again
        try:
            error = json.loads(reply.data).get("error")
        except ValueError:
            return ""
        if not isinstance(error, dict):
            return ""
        return f"JetStream answers: {str(error.get('description', error))[:200]}"

    async def close(self) -> None:
        """Close the probe's connection."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


async def _quiet(err: Exception) -> None:
    """nats-py logs each failed (re)connect with a traceback; the probe needs none of it."""
