"""The p2panda-js oracle, started once per session (see ``oracle.js`` and ``oracle_client.py``).

There is no skipping here on purpose: without Node or p2panda-js every interop test errors with a
message that says how to install them (``make test``, or ``npm install`` in tests/interop).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .oracle_client import Oracle


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    """A running ``node oracle.js`` wrapping p2panda-js 0.8.1, stopped at the end of the session."""
    running = Oracle.start()
    try:
        yield running
    finally:
        running.close()
