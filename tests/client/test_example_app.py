"""The README's example as a person runs it: ``pandanode up`` in one process, the venues app
(``python -m pandanode.client.examples.venues``) and the CLI in others."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.client.conftest import CLI_DEADLINE, PANDANODE, Ran, runner

STARTUP_DEADLINE = 60.0
README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
async def node_process(tmp_path: Path) -> AsyncIterator[str]:
    """A ``pandanode up`` subprocess on a free port; yields its address, stops it with SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        PANDANODE,
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        address = ""
        seen: list[str] = []
        while not address:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"pandanode up did not start: {''.join(seen)}"
            line = (await asyncio.wait_for(process.stdout.readline(), remaining)).decode()
            assert line, f"pandanode up exited: {''.join(seen)}"
            seen.append(line)
            found = re.search(r"pandanode listening on (\S+)", line)
            address = found.group(1) if found else ""
        yield address
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stdout.read(), CLI_DEADLINE)
        assert await process.wait() == 0
        assert b"draining" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_venues_example_runs_against_pandanode_up(node_process: str) -> None:
    env = {**os.environ, "PANDANODE_NODE": node_process, "COLUMNS": "200"}
    example = runner([sys.executable, "-m", "pandanode.client.examples.venues"], env)
    ran: Ran = await example("--node", node_process)
    assert ran.code == 0, ran.stderr
    out = ran.stdout
    assert "upcoming, not sold out: Launch party\n" in out
    assert re.search(r"picture downloaded: \d+ bytes of image/png", out)
    assert "does not serve queries" not in out
    event_schema = re.findall(r"event_0020[0-9a-f]{64}", out)
    assert event_schema, out

    # What the app made is there for the CLI too.
    pandanode = runner([PANDANODE], env)
    listed = await pandanode("documents", "list", event_schema[0], "--order-by", "title", "--json")
    assert listed.code == 0, listed.stderr
    assert [row["fields"]["title"] for row in listed.json()] == ["Jazz night", "Launch party"]
    assert [row["fields"]["sold_out"] for row in listed.json()] == [True, False]
    status = await pandanode("status", "--json")
    assert status.code == 0 and status.json()["serving"] is True
    assert "pandanode.query.v1.QueryService" in status.json()["services"]


async def test_the_readme_python_example_runs_against_pandanode_up(
    node_process: str, tmp_path: Path
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the README has no Python example"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0].replace('"127.0.0.1:2020"', repr(node_process)))
    ran = await runner([sys.executable, str(script)], dict(os.environ))()
    assert ran.code == 0, ran.stderr
    printed = ran.stdout.splitlines()
    assert "Document(" in printed[0] and "'seats': 150" in printed[0]  # the update, read back
    assert printed[1:] == ["{'name': 'Panda Hall', 'seats': 150}"]
