"""``pandanode health``, as a container health check runs it, against a real node."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from pandanode.services.health import default_address
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import free_port


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str
    stderr: str


async def health(*args: str, env: dict[str, str] | None = None) -> Answer:
    """Run ``pandanode health`` in a subprocess without blocking the node's event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pandanode.services.cli", "health", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Answer(process.returncode, stdout.decode(), stderr.decode())


def unused_address() -> str:
    return f"127.0.0.1:{free_port()}"


async def test_health_exits_0_and_prints_serving_for_a_running_node(node: Node) -> None:
    answer = await health("--address", node.address)

    assert answer.code == 0, answer.stderr
    assert answer.stdout.strip() == f"{node.address}: SERVING"


async def test_health_asks_about_one_service_by_its_short_name(node: Node) -> None:
    answer = await health("--address", node.address, "--service", "ingest")

    assert answer.code == 0, answer.stderr
    assert "pandanode.ingest.v1.IngestService: SERVING" in answer.stdout


async def test_health_exits_1_for_a_service_the_node_does_not_run(node: Node) -> None:
    answer = await health("--address", node.address, "--service", "no.such.Service")

    assert answer.code == 1
    assert "NOT_FOUND" in answer.stderr


async def test_health_exits_1_when_nothing_listens() -> None:
    answer = await health("--address", unused_address(), "--timeout", "2")

    assert answer.code == 1
    assert "UNAVAILABLE" in answer.stderr


async def test_health_exits_1_once_the_node_has_stopped(node: Node) -> None:
    address = node.address
    assert (await health("--address", address)).code == 0

    await node.stop()
    answer = await health("--address", address, "--timeout", "2")

    assert answer.code == 1


async def test_health_dials_the_port_of_pandanode_listen_by_default(node: Node) -> None:
    port = node.address.rpartition(":")[2]

    answer = await health(env={"PANDANODE_LISTEN": f"0.0.0.0:{port}"})

    assert answer.code == 0, answer.stderr
    assert answer.stdout.startswith(f"127.0.0.1:{port}: SERVING")


def test_default_address_without_a_listen_setting_is_the_default_port() -> None:
    assert default_address({}) == "127.0.0.1:2020"
    assert default_address({"PANDANODE_LISTEN": "0.0.0.0:4040"}) == "127.0.0.1:4040"


def test_default_port_is_the_listen_settings_default() -> None:
    from pandanode.services.runtime.settings import ENV_PREFIX, Settings

    assert default_address({}) == "127.0.0.1:" + Settings().listen.rpartition(":")[2]
    assert f"{ENV_PREFIX}LISTEN" == "PANDANODE_LISTEN"
