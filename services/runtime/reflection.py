"""Server reflection that serves the protos with their comments.

The descriptors compiled into the generated ``*_pb2`` modules carry no source info, so the
stock reflection servicer answers file descriptors without the protos' comments and
``grpcurl describe`` shows none. ``make proto`` also writes a descriptor set of pandanode's
protos with source info (``api_descriptors.binpb``, committed beside this module);
:class:`DocumentedReflectionServicer` answers like the stock servicer and swaps each of
pandanode's files in its answers for the documented copy of the same file.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

__all__ = ["DESCRIPTOR_SET_FILE", "DocumentedReflectionServicer", "documented_files"]

DESCRIPTOR_SET_FILE: Final = "api_descriptors.binpb"
"""The descriptor set with source info, a resource of this package (written by make proto)."""


@cache
def documented_files() -> Mapping[str, bytes]:
    """Each of pandanode's proto files, by name, as a serialized ``FileDescriptorProto``.

    Read once from :data:`DESCRIPTOR_SET_FILE`; the descriptors keep their source info.
    """
    raw = resources.files("pandanode.services.runtime").joinpath(DESCRIPTOR_SET_FILE).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(raw).file
    return {file.name: file.SerializeToString() for file in files}


class DocumentedReflectionServicer(reflection_pb2_grpc.ServerReflectionServicer):  # type: ignore[misc]
    """The stock ``grpc.aio`` reflection servicer, answering documented file descriptors.

    Args:
        service_names: The full names of the services to list (reflection's own included).
        documented: Serialized file descriptors by file name (default: :func:`documented_files`).
    """

    def __init__(
        self, service_names: Iterable[str], documented: Mapping[str, bytes] | None = None
    ) -> None:
        self._inner = reflection.aio.ReflectionServicer(list(service_names))  # type: ignore[attr-defined]
        self._documented = documented_files() if documented is None else documented

    async def ServerReflectionInfo(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: Any,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        """Answer each reflection request as the stock servicer does, with documented files."""
        async for response in self._inner.ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                files = response.file_descriptor_response.file_descriptor_proto
                documented = [self._documented_copy(raw) for raw in files]
                del files[:]
                files.extend(documented)
            yield response

    def _documented_copy(self, raw: bytes) -> bytes:
        name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
        return self._documented.get(name, raw)
