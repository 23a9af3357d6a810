"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import PORT_RANGE_VARIABLE
from pandanode.services.runtime.settings import Settings
from tests.faults.harness import ROUNDS, SEED, TALLY_PROPERTY, Tally
from tests.interop.oracle_client import Oracle
from tests.services.support import node_settings

FIXTURES = Path(__file__).parent / "fixtures"

# `pandanode up` turns LAN discovery on. Nodes the tests start as subprocesses (and the bench
# smoke run's) inherit this, so they do not find each other, or the nodes of a test run next
# door, and add peer events to streams the tests count. In-process nodes are built from
# Settings(), where LAN discovery is off; the discovery tests turn it on with a port of their own.
os.environ.setdefault("PANDANODE_LAN_DISCOVERY", "false")
# Every node of the tests serves its HTTP gateway on a free port (never 2021 of a real node).
os.environ.setdefault("PANDANODE_HTTP_LISTEN", "127.0.0.1:0")
# A port a test picks (free_port) and hands to a process it starts is free only until someone
# binds it. Under xdist each worker, and the processes it starts, pick such ports from a range
# of its own below the system's ephemeral ports (32768-60999 by default), so neither the other
# worker nor a port the system hands out (bind to port 0, an outgoing connection) can take one
# first. Two runs side by side on one machine get different ranges, mostly (by their run id).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _RUN = zlib.crc32(os.environ.get("PYTEST_XDIST_TESTRUNUID", "").encode())
    _SLOT = (_RUN % 3 * 2 + int(_WORKER[2:])) % 6
    os.environ[PORT_RANGE_VARIABLE] = f"{20000 + 2000 * _SLOT}-{21999 + 2000 * _SLOT}"

hypothesis_settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("default")


# A fixture made once per module (or per session, defined in the test module itself), such as
# the bench smoke run or a wheelhouse: its module's tests run on one xdist worker.
_SHARED_FIXTURE = re.compile(r"@pytest\.fixture\(\s*scope=\"(?:module|package|class|session)\"")
# The fault cases each drive a node at full load while killing and stopping its processes:
# they run one after another on one worker, as in a run without workers (two at once on a
# 2-core machine starved a SIGSTOPped query process's catch-up past its 120 s deadline).
_ONE_WORKER_DIRECTORIES = ("tests/faults/",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (``make test``): tests go to the workers one by one, except that the
    tests of a module with a shared fixture (:data:`_SHARED_FIXTURE`) go to one worker together,
    so that fixture is made once, as in a run without workers, and so do the tests under each
    of :data:`_ONE_WORKER_DIRECTORIES`.

    xdist's own loadgroup reads ``xdist_group`` marks through node ids that pytest 9 no longer
    lets a plugin change; this scheduler finds the groups by reading the test modules instead.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    root = Path(str(config.rootpath))

    class SharedFixtureModules(LoadScopeScheduling):  # type: ignore[misc]  # untyped
        def __init__(self, config: pytest.Config, log: Any) -> None:
            super().__init__(config, log)
            self._grouped: dict[str, bool] = {}

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            for directory in _ONE_WORKER_DIRECTORIES:
                if module.startswith(directory):
                    return directory
            if module not in self._grouped:
                path = root / module
                text = path.read_text() if path.suffix == ".py" and path.is_file() else ""
                self._grouped[module] = bool(_SHARED_FIXTURE.search(text))
            return module if self._grouped[module] else nodeid

    config.option.loadscopereorder = False  # collection order: the long bench smoke run first
    return SharedFixtureModules(config, log)


# The fault suite's tallies (tests/faults), from the reports of this process or of the workers.
_TALLIES: list[Tally] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the fault suite's tallies from the teardown reports."""
    if report.when == "teardown":
        for name, value in report.user_properties:
            if name == TALLY_PROPERTY:
                assert isinstance(value, dict)
                _TALLIES.append(Tally(**value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each fault case's counts and the totals."""
    if not _TALLIES:
        return
    terminalreporter.section(f"fault suite (seed {SEED}, {ROUNDS} rounds per case)")
    for recorded in _TALLIES:
        terminalreporter.write_line(recorded.line())
    total = Tally(
        "total",
        faults=sum(t.faults for t in _TALLIES),
        acknowledged=sum(t.acknowledged for t in _TALLIES),
        lost=sum(t.lost for t in _TALLIES),
        invalid=sum(t.invalid for t in _TALLIES),
    )
    terminalreporter.write_line(total.line())


@pytest.fixture(scope="session")
def spec_vectors() -> dict[str, Any]:
    """The test vectors of spec §11, committed under tests/fixtures."""
    data: dict[str, Any] = json.loads((FIXTURES / "spec_vectors.json").read_text())
    return data


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    """The real p2panda-js 0.8.1 behind ``tests/interop/oracle.js``, one per session.

    There is no skipping on purpose: without Node or p2panda-js every test that uses it errors
    with a message that says how to install them (``make test``, or ``npm install`` in
    tests/interop).
    """
    running = Oracle.start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a node with its data in a fresh temporary directory, on a free port."""
    return node_settings(tmp_path / "data")


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    """An all-in-one node (embedded NATS, every service) serving on 127.0.0.1:<free port>."""
    async with Node(settings) as running:
        yield running
