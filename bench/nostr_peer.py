"""The nostr side of the peer baseline: sign events, publish them one at a time.

This file runs with the Python of the nostr-relay venv the bench makes (it needs that venv's
``aionostr``, which signs with ``coincurve``, and ``websockets``), never in the project's venv;
it is a script, not part of the bench package (see :mod:`bench.scenarios.peers`).

``python nostr_peer.py sign COUNT`` prints COUNT signed kind-1 events as JSON lines (50 keys in
turn, as the pandanode workload has many authors). ``python nostr_peer.py publish URL`` reads
such lines from stdin until an empty line, opens one websocket to the relay, publishes one
warm-up event, prints ``ready`` and waits for a line on stdin (the caller reads the relay's CPU
time meanwhile); then it sends each event and waits for its ``["OK", id, true, …]`` before the
next, and prints one JSON object: ``count``, ``seconds`` and every event's ``latencies`` (s).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

__all__ = ["main", "publish", "sign"]

KEYS = 50


def sign(count: int) -> list[str]:
    """``count`` signed kind-1 events (NIP-01 JSON), one per line, content of entry size."""
    from aionostr.event import Event  # type: ignore[import-not-found,unused-ignore]
    from aionostr.key import PrivateKey  # type: ignore[import-not-found,unused-ignore]

    keys = [PrivateKey() for _ in range(KEYS)]
    now = int(time.time())
    lines = []
    for index in range(count):
        key = keys[index % KEYS]
        event = Event(
            pubkey=key.public_key.hex(),
            content=f"bench item {index // KEYS} v{index % 10}, rank {index}",
            created_at=now,
            kind=1,
            tags=[],
        )
        key.sign_event(event)
        lines.append(json.dumps(event.to_json_object(), separators=(",", ":")))
    return lines


async def publish(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish ``events[0]`` as warm-up, then the rest one at a time; the timings."""
    import websockets  # type: ignore[import-not-found,unused-ignore]

    async with websockets.connect(url, compression=None, max_size=None) as socket:

        async def send(event: dict[str, Any]) -> None:
            await socket.send(json.dumps(["EVENT", event], separators=(",", ":")))
            while True:
                answer = json.loads(await socket.recv())
                if answer[0] == "OK" and answer[1] == event["id"]:
                    if answer[2] is not True:
                        raise RuntimeError(f"the relay refused {event['id']}: {answer[3]!r}")
                    return
                if answer[0] == "NOTICE":
                    raise RuntimeError(f"the relay sent a NOTICE: {str(answer[1])[:200]!r}")

        await send(events[0])
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        latencies = []
        start = time.perf_counter()
        for event in events[1:]:
            sent = time.perf_counter()
            await send(event)
            latencies.append(time.perf_counter() - sent)
        seconds = time.perf_counter() - start
    return {"count": len(latencies), "seconds": seconds, "latencies": latencies}


def main(argv: list[str]) -> int:
    """``sign COUNT`` or ``publish URL`` (see the module docstring)."""
    if len(argv) == 2 and argv[0] == "sign":
        sys.stdout.write("".join(line + "\n" for line in sign(int(argv[1]))))
        return 0
    if len(argv) == 2 and argv[0] == "publish":
        events = []
        for line in sys.stdin:
            if not line.strip():
                break
            events.append(json.loads(line))
        if len(events) < 2:
            print("publish needs a warm-up event and at least one more", file=sys.stderr)
            return 2
        result = asyncio.run(publish(argv[1], events))
        print(json.dumps(result), flush=True)
        return 0
    print("usage: nostr_peer.py sign COUNT | publish URL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
