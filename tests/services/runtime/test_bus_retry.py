"""JetStream API calls are retried while the cluster is slow to answer, then fail clearly."""

from __future__ import annotations

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError

from pandanode.services.runtime import bus
from pandanode.services.runtime.errors import UnavailableError


async def test_a_jetstream_call_that_times_out_is_tried_again_until_it_answers() -> None:
    failures = [NatsTimeoutError(), ServiceUnavailableError()]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "answer"

    assert await bus._retrying(call, "a test call") == "answer"
    assert failures == []


async def test_a_jetstream_call_that_never_answers_fails_unavailable_naming_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus, "_API_DEADLINE", 0.3)
    attempts = 0

    async def call() -> str:
        nonlocal attempts
        attempts += 1
        raise NatsTimeoutError()

    with pytest.raises(UnavailableError, match="did not answer a test call within"):
        await bus._retrying(call, "a test call")
    assert attempts >= 2


async def test_other_errors_of_a_jetstream_call_are_not_retried() -> None:
    attempts = 0

    async def call() -> str:
        nonlocal attempts
        attempts += 1
        raise ValueError("bad request")

    with pytest.raises(ValueError, match="bad request"):
        await bus._retrying(call, "a test call")
    assert attempts == 1
