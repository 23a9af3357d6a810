"""The fault suite's tally: each case records what it injected and found; the totals are printed
at the end of the run (``make test`` runs one round of each case, ``make soak`` many) by
tests/conftest.py, which the process that prints the summary loads under xdist too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

import pytest

from .harness import TALLY_PROPERTY, Tally


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The tally of this case, named after the test."""
    recorded = Tally(request.node.name.removeprefix("test_").replace("_", " ")[:70])
    yield recorded
    # In the test's report: an xdist worker sends it to the process that prints the summary.
    request.node.user_properties.append((TALLY_PROPERTY, asdict(recorded)))
