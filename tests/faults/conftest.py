"""The fault suite's tally: each case records what it injected and found; the totals are printed
at the end of the run (``make test`` runs one round of each case, ``make soak`` many)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

import pytest

from .harness import ROUNDS, SEED, Tally

TALLIES: list[Tally] = []
_TALLY = "fault_tally"


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The tally of this case, named after the test."""
    recorded = Tally(request.node.name.removeprefix("test_").replace("_", " ")[:70])
    yield recorded
    # In the test's report: an xdist worker sends it to the process that prints the summary.
    request.node.user_properties.append((_TALLY, asdict(recorded)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the tallies from the teardown reports (this process's or a worker's)."""
    if report.when == "teardown":
        for name, value in report.user_properties:
            if name == _TALLY:
                assert isinstance(value, dict)
                TALLIES.append(Tally(**value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each case's counts and the totals."""
    if not TALLIES:
        return
    terminalreporter.section(f"fault suite (seed {SEED}, {ROUNDS} rounds per case)")
    for recorded in TALLIES:
        terminalreporter.write_line(recorded.line())
    total = Tally(
        "total",
        faults=sum(t.faults for t in TALLIES),
        acknowledged=sum(t.acknowledged for t in TALLIES),
        lost=sum(t.lost for t in TALLIES),
        invalid=sum(t.invalid for t in TALLIES),
    )
    terminalreporter.write_line(total.line())
