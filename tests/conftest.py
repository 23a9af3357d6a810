"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

FIXTURES = Path(__file__).parent / "fixtures"

settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


@pytest.fixture(scope="session")
def spec_vectors() -> dict[str, Any]:
    """The test vectors of spec §11, committed under tests/fixtures."""
    data: dict[str, Any] = json.loads((FIXTURES / "spec_vectors.json").read_text())
    return data
