"""The README's Python example runs as written against a real node."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from pandanode.services.node import Node
from tests.services.conftest import node, settings  # noqa: F401 - fixtures

README = Path(__file__).parent.parent / "README.md"


def _python_example() -> str:
    text = README.read_text()
    section = text.split("## Using the node from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its Python example"
    return match.group(1)


async def test_the_readme_python_example_runs_against_a_node(node: Node) -> None:  # noqa: F811
    code = _python_example().replace("127.0.0.1:2020", node.address)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode()
    assert process.returncode == 0, text
    assert "Panda Hall" in text
    assert "150" in text
