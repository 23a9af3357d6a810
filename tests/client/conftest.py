"""Fixtures of the client tests: clients of the real node of tests/conftest.py."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pandanode.client import Client, KeyPair
from pandanode.services.node import Node


@pytest.fixture
def key_pair() -> KeyPair:
    """The key pair of the main author."""
    return KeyPair()


@pytest.fixture
async def client(node: Node, key_pair: KeyPair) -> AsyncIterator[Client]:
    """A client of :func:`node` that signs with :func:`key_pair`."""
    async with Client.connect(node.address, key_pair=key_pair, timeout=10.0) as opened:
        yield opened


@dataclass(frozen=True)
class Ran:
    """How a CLI run ended."""

    code: int
    stdout: str
    stderr: str
    raw: bytes = b""

    def json(self) -> Any:
        return json.loads(self.stdout)


Cli = Callable[..., Awaitable[Ran]]

CLI_DEADLINE = 60.0


@pytest.fixture
def cli_env(node: Node, tmp_path: Path) -> dict[str, str]:
    """The environment of a person using :func:`node` with a fresh key file."""
    return {
        **os.environ,
        "PANDANODE_NODE": node.address,
        "PANDANODE_KEY_FILE": str(tmp_path / "keys" / "private-key"),
        "COLUMNS": "200",
    }


def runner(program: list[str], env: dict[str, str]) -> Cli:
    """Run ``program …`` as a subprocess and collect what it printed and its exit code."""

    async def run(*args: str, stdin: bytes | None = None) -> Ran:
        process = await asyncio.create_subprocess_exec(
            *program,
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), CLI_DEADLINE)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Ran(process.returncode, out.decode(errors="replace"), err.decode(), out)

    return run


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Cli:
    """Run ``python -m pandanode.client.cli …`` against :func:`node`."""
    return runner([sys.executable, "-m", "pandanode.client.cli"], cli_env)


PANDANODE = str(Path(sys.executable).with_name("pandanode"))
"""The ``pandanode`` console script of this environment."""


@pytest.fixture
def pandanode(cli_env: dict[str, str]) -> Cli:
    """Run the ``pandanode`` console script (node and client commands) against :func:`node`."""
    return runner([PANDANODE], cli_env)
