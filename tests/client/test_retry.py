"""The client retries as the node says: ``google.rpc.RetryInfo`` decides when, and whether.

A scripted gRPC server (real, on 127.0.0.1) answers the client's calls with the statuses a
node sends, RetryInfo among their details, and records when each call arrived.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pandanode.client import Client, KeyPair, LimitExceededError, NodeUnavailableError
from pandanode.client._connection import retry_wait
from pandanode.ingest.v1 import ingest_pb2

SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


@dataclass(frozen=True)
class Failure:
    """One scripted failed answer: a status code, with a RetryInfo delay or without."""

    code: grpc.StatusCode
    retry_delay: float | None = None

    def status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(
            reason="UNAVAILABLE" if self.code is grpc.StatusCode.UNAVAILABLE else "WATCH_TOO_SLOW",
            domain="pandanode",
        )
        details = [_packed(info)]
        if self.retry_delay is not None:
            s = self.retry_delay
            delay = duration_pb2.Duration(seconds=int(s), nanos=int((s % 1) * 1e9))
            details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
        message = f"scripted {self.code.name}"
        status = status_pb2.Status(code=self.code.value[0], message=message, details=details)
        return rpc_status.to_status(status)


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass
class ScriptedIngest:
    """Answers IngestService.NextArgs with the scripted failures in turn, then with success."""

    failures: list[Failure] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    async def next_args(
        self, request: ingest_pb2.NextArgsRequest, context: Any
    ) -> ingest_pb2.NextArgsResponse:
        self.arrivals.append(time.monotonic())
        if self.failures:
            await context.abort_with_status(self.failures.pop(0).status())
        return ingest_pb2.NextArgsResponse(next_args=ingest_pb2.NextArguments(log_id=7, seq_num=1))


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedIngest, str]]:
    """A real gRPC server serving :class:`ScriptedIngest`, and its address."""
    servicer = ScriptedIngest()
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.next_args,
        request_deserializer=ingest_pb2.NextArgsRequest.FromString,
        response_serializer=ingest_pb2.NextArgsResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"NextArgs": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def _gaps(arrivals: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


async def test_unavailable_is_retried_after_the_delay_the_node_asked_for(
    scripted: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = scripted
    # The client's own first back-off is 0.05 s: waiting 0.4 s can only be the node's delay.
    servicer.failures = [Failure(grpc.StatusCode.UNAVAILABLE, 0.4)]
    async with Client.connect(address, key_pair=KeyPair(), timeout=10.0, retries=3) as client:
        args = await client.next_args()
    assert (args.log_id, args.seq_num) == (7, 1)
    assert len(servicer.arrivals) == 2
    assert _gaps(servicer.arrivals)[0] >= 0.4


async def test_resource_exhausted_with_retry_info_is_retried_after_its_delay(
    scripted: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = scripted
    servicer.failures = [
        Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.3),
        Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.5),
    ]
    async with Client.connect(address, key_pair=KeyPair(), timeout=10.0, retries=3) as client:
        args = await client.next_args()
    assert args.log_id == 7
    assert len(servicer.arrivals) == 3
    first, second = _gaps(servicer.arrivals)
    assert first >= 0.3 and second >= 0.5


async def test_resource_exhausted_without_retry_info_is_raised_without_a_retry(
    scripted: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = scripted
    servicer.failures = [Failure(grpc.StatusCode.RESOURCE_EXHAUSTED)]
    async with Client.connect(address, key_pair=KeyPair(), timeout=10.0, retries=3) as client:
        with pytest.raises(LimitExceededError, match="scripted RESOURCE_EXHAUSTED") as raised:
            await client.next_args()
    assert raised.value.retry_delay is None
    assert len(servicer.arrivals) == 1


async def test_a_delay_beyond_the_calls_timeout_raises_at_once_instead_of_waiting(
    scripted: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = scripted
    # Waited, an hour would outlast the test's own timeout: the test passing shows it was not.
    servicer.failures = [
        Failure(grpc.StatusCode.UNAVAILABLE, 3600.0),
        Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, 3600.0),
    ]
    async with Client.connect(address, key_pair=KeyPair(), timeout=5.0, retries=3) as client:
        with pytest.raises(NodeUnavailableError) as unavailable:
            await client.next_args()
        with pytest.raises(LimitExceededError) as exhausted:
            await client.next_args()
    assert unavailable.value.retry_delay == exhausted.value.retry_delay == 3600.0
    assert len(servicer.arrivals) == 2  # one call each: neither was retried


async def test_retries_stop_after_the_configured_number(
    scripted: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = scripted
    servicer.failures = [Failure(grpc.StatusCode.UNAVAILABLE, 0.01)] * 4
    async with Client.connect(address, key_pair=KeyPair(), timeout=10.0, retries=2) as client:
        with pytest.raises(NodeUnavailableError):
            await client.next_args()
    assert len(servicer.arrivals) == 3


@pytest.mark.parametrize(
    ("backoff", "retry_delay", "remaining", "wait"),
    [
        pytest.param(0.05, None, 10.0, 0.05, id="no-retry-info-uses-the-back-off"),
        pytest.param(0.05, 1.0, 10.0, 1.0, id="the-nodes-delay-over-a-shorter-back-off"),
        pytest.param(3.2, 0.25, 10.0, 0.25, id="the-nodes-delay-over-a-longer-back-off"),
        pytest.param(0.05, 0.0, 10.0, 0.0, id="a-zero-delay-retries-at-once"),
        pytest.param(0.05, 1.0, 1.0, 1.0, id="a-delay-that-just-fits"),
        pytest.param(0.05, 1.5, 1.0, None, id="a-delay-beyond-the-timeout-gives-up"),
        pytest.param(0.8, None, 0.5, None, id="a-back-off-beyond-the-timeout-gives-up"),
        pytest.param(0.05, None, -0.1, None, id="a-timeout-already-spent-gives-up"),
    ],
)
def test_retry_wait_is_the_nodes_delay_else_the_back_off_within_the_timeout(
    backoff: float, retry_delay: float | None, remaining: float, wait: float | None
) -> None:
    assert retry_wait(backoff, retry_delay, remaining) == wait
