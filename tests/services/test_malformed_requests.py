"""Unparseable request bytes on every method of every service: INVALID_ARGUMENT with the
MALFORMED_REQUEST reason, no traceback in the log, and the node keeps serving.

The methods are taken from the service descriptors, so a new method is covered without
touching this file.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from pandanode.discovery.v1 import discovery_pb2
from pandanode.ingest.v1 import ingest_pb2
from pandanode.query.v1 import query_pb2
from pandanode.replication.v1 import replication_pb2
from pandanode.services.node import Node
from tests.services.ingest.helpers import rejection_of

SERVICES = [
    *ingest_pb2.DESCRIPTOR.services_by_name.values(),
    *query_pb2.DESCRIPTOR.services_by_name.values(),
    *discovery_pb2.DESCRIPTOR.services_by_name.values(),
    *replication_pb2.DESCRIPTOR.services_by_name.values(),
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]
METHODS = [method for service in SERVICES for method in service.methods]


def _random_garbage(message: Any) -> bytes:
    """Seeded random bytes that do not parse as ``message`` (the first seed that fails)."""
    for seed in range(1000):
        candidate = random.Random(seed).randbytes(48)
        try:
            message.FromString(candidate)
        except DecodeError:
            return candidate
    raise AssertionError("no unparseable random bytes found")  # pragma: no cover


def _invalid_utf8(descriptor: _descriptor.Descriptor) -> bytes | None:
    """A string field of ``descriptor`` holding bytes that are not UTF-8 (None: no such field)."""
    for field in descriptor.fields:
        if field.type == _descriptor.FieldDescriptor.TYPE_STRING:
            return bytes([(field.number << 3) | 2, 2, 0xC3, 0x28])
    return None


def _string_field(method: _descriptor.MethodDescriptor) -> str:
    return next(
        f.name
        for f in method.input_type.fields
        if f.type == _descriptor.FieldDescriptor.TYPE_STRING
    )


def malformed_payloads(method: _descriptor.MethodDescriptor) -> Iterator[tuple[str, bytes]]:
    """The kinds of unparseable bytes an attacker sends, each checked not to parse locally."""
    message = _message_class(method.input_type)
    yield "random bytes", _random_garbage(message)
    yield "varint that never ends", b"\xff" * 12
    yield "truncated length-delimited field", b"\x0a\x10abc"
    utf8 = _invalid_utf8(method.input_type)
    if utf8 is not None:
        yield "invalid UTF-8 in a string field", utf8


def _message_class(descriptor: _descriptor.Descriptor) -> Any:
    return message_factory.GetMessageClass(descriptor)


async def _call(channel: grpc.aio.Channel, method: Any, requests: list[bytes]) -> None:
    """Send raw bytes (no serializer) to ``method``, reading every response."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        async for _ in channel.stream_stream(path, None, None)(iter(requests)):
            pass
    elif method.client_streaming:
        await channel.stream_unary(path, None, None)(iter(requests))
    elif method.server_streaming:
        async for _ in channel.unary_stream(path, None, None)(requests[0]):
            pass
    else:
        await channel.unary_unary(path, None, None)(requests[0])


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
async def test_unparseable_request_is_invalid_argument_malformed_request_and_node_keeps_serving(
    node: Node,
    channel: grpc.aio.Channel,
    method: _descriptor.MethodDescriptor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    message = _message_class(method.input_type)
    for kind, payload in malformed_payloads(method):
        with pytest.raises(DecodeError):
            message.FromString(payload)
        sequences = [[payload]]
        if method.client_streaming:
            sequences.append([b"", payload])  # a valid (empty) message first, then garbage
        for requests in sequences:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await within_deadline(_call(channel, method, requests))
            rejected = rejection_of(raised.value)
            assert (rejected.code, rejected.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "MALFORMED_REQUEST",
            ), f"{kind}: {raised.value.code()} {raised.value.details()}"
            assert method.input_type.full_name in rejected.message
            # A google.rpc.BadRequest names the field at fault (the string field that holds
            # invalid UTF-8; for bytes broken between fields, the request as a whole: "").
            assert len(rejected.violations) == 1, kind
            if kind == "invalid UTF-8 in a string field":
                (violated, _), string_field = rejected.violations[0], _string_field(method)
                assert violated in {string_field, f"{string_field}[0]"}
                assert rejected.metadata["field"] == violated
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    guard_lines = [r for r in caplog.records if r.name == "pandanode.services.runtime.guard"]
    assert len(guard_lines) <= 1
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    info = await channel.unary_unary(
        "/pandanode.discovery.v1.DiscoveryService/GetNodeInfo",
        request_serializer=discovery_pb2.GetNodeInfoRequest.SerializeToString,
        response_deserializer=discovery_pb2.GetNodeInfoResponse.FromString,
    )(discovery_pb2.GetNodeInfoRequest(), timeout=10)
    assert len(info.node_id) == 64


async def within_deadline(call: Any, seconds: float = 20.0) -> None:
    """Await ``call`` within ``seconds`` (a hung call must fail the test, not stall it)."""
    await asyncio.wait_for(call, seconds)
