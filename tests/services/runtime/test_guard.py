"""The malformed-request guard's parts: its rate-limited log line."""

from __future__ import annotations

import logging

import pytest

from pandanode.services.runtime.guard import RateLimitedLog


def test_rate_limited_log_writes_one_line_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    reports = RateLimitedLog(logging.getLogger("test.guard"), interval=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="test.guard")
    assert reports.warning("bad request to %s", "A")
    for _ in range(5):
        now[0] += 1.0
        assert not reports.warning("bad request to %s", "B")
    now[0] += 10.0
    assert reports.warning("bad request to %s", "C")
    assert [r.getMessage() for r in caplog.records] == [
        "bad request to A",
        "bad request to C (5 more like it not logged)",
    ]
    assert not [r for r in caplog.records if r.exc_info]
