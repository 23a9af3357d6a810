"""Reflection serves the protos with their comments, so ``grpcurl describe`` shows them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pandanode.discovery.v1 import discovery_pb2
from pandanode.errors.v1 import errors_pb2
from pandanode.events.v1 import events_pb2
from pandanode.ingest.v1 import ingest_pb2
from pandanode.node.v1 import node_pb2
from pandanode.query.v1 import query_pb2
from pandanode.services.runtime.reflection import documented_files
from pandanode.services.runtime.server import GrpcServer
from pandanode.services.runtime.settings import Settings

GENERATED = [discovery_pb2, errors_pb2, events_pb2, ingest_pb2, node_pb2, query_pb2]


@pytest.fixture
async def address() -> AsyncIterator[str]:
    server = GrpcServer(Settings(listen="127.0.0.1:0"))
    server.add_services(["pandanode.query.v1.QueryService"])
    bound = await server.start()
    try:
        yield bound
    finally:
        await server.stop(0)


async def _ask(
    address: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for response in stub.ServerReflectionInfo(iter([request])):
            return response
    raise AssertionError("no reflection response")


def _comments(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    return [location.leading_comments.strip() for location in file.source_code_info.location]


async def test_reflection_answers_file_descriptors_with_the_comments_of_the_protos(
    address: str,
) -> None:
    response = await _ask(
        address,
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="pandanode.query.v1.QueryService"
        ),
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    query = next(file for file in files if file.name == "pandanode/query/v1/query.proto")
    comments = _comments(query)
    assert (
        "The schemas this node knows (system and application schemas), ordered by schema id and\n"
        " paginated." in comments
    )
    assert "Pass as page_token to get the next page; empty when this is the last page." in comments
    # Its dependencies (google/protobuf/duration.proto) come as the stock servicer sends them.
    assert "google/protobuf/duration.proto" in {file.name for file in files}


async def test_reflection_answers_a_file_by_name_with_its_comments(address: str) -> None:
    response = await _ask(
        address,
        reflection_pb2.ServerReflectionRequest(file_by_filename="pandanode/errors/v1/errors.proto"),
    )
    (raw,) = response.file_descriptor_response.file_descriptor_proto
    errors = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert "The entry's backlink is not the hash of the log's previous entry." in _comments(errors)


async def test_reflection_still_lists_the_services_and_answers_unknown_symbols_not_found(
    address: str,
) -> None:
    listed = await _ask(address, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert "pandanode.query.v1.QueryService" in names
    missing = await _ask(
        address, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol")
    )
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_the_committed_descriptor_set_is_the_generated_code_plus_source_info() -> None:
    documented = documented_files()
    for module in GENERATED:
        generated = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert generated.name in documented, f"{generated.name}: run make proto"
        committed = descriptor_pb2.FileDescriptorProto.FromString(documented[generated.name])
        assert committed.source_code_info.location, generated.name
        committed.ClearField("source_code_info")
        _clear_json_names(committed.message_type)  # protoc adds them to descriptor sets only
        assert committed == generated, f"{generated.name} changed since make proto: run it"


def _clear_json_names(messages) -> None:  # type: ignore[no-untyped-def]
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _clear_json_names(message.nested_type)


def test_every_service_method_message_field_and_enum_value_has_a_comment() -> None:
    """buf's COMMENTS rules, checked on the committed descriptor set."""
    missing: list[str] = []
    for name, raw in documented_files().items():
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        commented = {
            tuple(location.path)
            for location in file.source_code_info.location
            if location.leading_comments.strip() or location.trailing_comments.strip()
        }
        missing += [f"{name}: {what}" for path, what in _elements(file) if path not in commented]
    assert not missing, "\n".join(missing)


Element = tuple[tuple[int, ...], str]


def _elements(file: descriptor_pb2.FileDescriptorProto) -> list[Element]:
    """The source paths and names of every service, method, message, field, oneof and enum."""
    found: list[Element] = []
    for s, service in enumerate(file.service):
        found.append(((6, s), service.name))
        found += [
            ((6, s, 2, m), f"{service.name}.{method.name}")
            for m, method in enumerate(service.method)
        ]
    found += _messages(file.message_type, (4,), "")
    found += _enums(file.enum_type, (5,), "")
    return found


def _messages(
    messages: Iterable[descriptor_pb2.DescriptorProto], prefix: tuple[int, ...], scope: str
) -> list[Element]:
    found: list[Element] = []
    for i, message in enumerate(messages):
        if message.options.map_entry:  # written by protoc for a map field, not in the .proto
            continue
        path, name = (*prefix, i), f"{scope}{message.name}"
        found.append((path, name))
        found += [((*path, 2, f), f"{name}.{field.name}") for f, field in enumerate(message.field)]
        found += [((*path, 8, o), f"{name}.{o_.name}") for o, o_ in enumerate(message.oneof_decl)]
        found += _messages(message.nested_type, (*path, 3), f"{name}.")
        found += _enums(message.enum_type, (*path, 4), f"{name}.")
    return found


def _enums(
    enums: Iterable[descriptor_pb2.EnumDescriptorProto], prefix: tuple[int, ...], scope: str
) -> list[Element]:
    found: list[Element] = []
    for i, enum in enumerate(enums):
        path, name = (*prefix, i), f"{scope}{enum.name}"
        found.append((path, name))
        found += [((*path, 2, v), f"{name}.{value.name}") for v, value in enumerate(enum.value)]
    return found
