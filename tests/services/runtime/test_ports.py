"""Ports for other processes: picked so that two test workers on one machine cannot race for one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import nats
import pytest

from pandanode.services.runtime.nats_server import PORT_RANGE_VARIABLE, EmbeddedNats, free_port


def test_free_port_steps_through_its_range_and_skips_ports_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ten ports of this worker's own range (no other process of the run picks from it).
    first = int(os.environ.get(PORT_RANGE_VARIABLE, "20000-21999").partition("-")[0])
    monkeypatch.setenv(PORT_RANGE_VARIABLE, f"{first}-{first + 9}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy_port = busy.getsockname()[1]
        # A port of the range bound by someone else: one of the ten, whichever is free.
        taken = socket.socket()
        for port in range(first, first + 10):
            try:
                taken.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        with taken:
            in_use = taken.getsockname()[1]
            handed = [free_port() for _ in range(9)]

    assert busy_port not in range(first, first + 10)  # the system's own picks stay outside
    assert in_use not in handed
    assert all(first <= port <= first + 9 for port in handed)
    assert len(set(handed)) == len(handed), "a process hands out each port of its range once"


def test_free_port_without_a_range_is_one_the_system_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PORT_RANGE_VARIABLE, raising=False)
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())

    assert low <= free_port() <= high


async def test_embedded_nats_on_port_0_listens_where_the_system_put_it_and_keeps_it(
    tmp_path: Path,
) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    await server.start()
    try:
        port = server.port
        client = await nats.connect(server.url)
        await client.close()

        await server.stop()
        await server.start()  # a restart: clients reconnect to the same URL

        assert port != 0
        assert server.port == port
        client = await nats.connect(server.url)
        await client.close()
    finally:
        await server.stop()
