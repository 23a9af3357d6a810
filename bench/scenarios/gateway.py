"""The HTTP gateway: GraphQL next to gRPC in the same run, on the same node and documents.

``all_S`` (first 25, one filter, ordered) over ``POST /graphql`` next to the same
``ListDocuments`` call over gRPC, the two alternating call by call (with the same threshold),
so that both see the same load of a shared machine; ``publish`` over GraphQL next to unary
``Publish``, both one call at a time per worker with the same number of workers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import grpc
import grpc.aio
import httpx

from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as q
from pandanode.query.v1 import query_pb2_grpc

from ..client import CHANNEL_OPTIONS, creates, paced_stream, publish_setup, wait_count, wait_schema
from ..context import Context
from ..registry import Option, ScenarioResult, scenario

__all__ = ["graphql_vs_grpc"]

_PUBLISH = """mutation Publish($entry: String!, $operation: String!) {
  publish(entry: $entry, operation: $operation) { logId seqNum }
}"""


def _all_query(schema_id: str) -> str:
    return f"""query Page($rank: Int!) {{
  all_{schema_id}(first: 25, filter: {{rank: {{gte: $rank}}}}, orderBy: rank) {{
    totalCount hasNextPage endCursor
    documents {{ cursor meta {{ documentId viewId owner }} fields {{ title rank score done }} }}
  }}
}}"""


async def _timed(
    calls: int,
    seconds: float,
    kinds: Sequence[Callable[[int], Awaitable[None]]],
    rng: random.Random,
) -> list[list[float]]:
    """Rounds of one call of each kind in turn, with the same argument; each kind's latencies.

    Up to ``calls`` rounds, for at most ``seconds`` per kind.
    """
    latencies: list[list[float]] = [[] for _ in kinds]
    until = time.perf_counter() + seconds * len(kinds)
    while len(latencies[0]) < calls and time.perf_counter() < until:
        argument = rng.randrange(1 << 30)
        for call, samples in zip(kinds, latencies, strict=True):
            start = time.perf_counter()
            await call(argument)
            samples.append(time.perf_counter() - start)
    return latencies


async def _publish_all(
    requests: Sequence[pb.PublishRequest],
    workers: int,
    publish: Callable[[pb.PublishRequest], Awaitable[None]],
) -> float:
    """Publish one-entry logs with ``workers`` calls in flight; the seconds it took."""
    pending = deque(requests)

    async def worker() -> None:
        while pending:
            await publish(pending.popleft())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - start


@scenario(
    "gateway.graphql_vs_grpc",
    title="GraphQL over HTTP (gateway) next to gRPC: all_S page of 25 with a filter; publish",
    requires=("query",),
    options=(
        Option("--gateway-documents", int, 2000, "documents loaded before the reads", smoke=100),
        Option("--gateway-calls", int, 1000, "reads of each kind", smoke=50),
        Option("--gateway-seconds", float, 20.0, "at most this long per kind of read", smoke=5.0),
        Option("--gateway-publishes", int, 1000, "entries published each way", smoke=50),
        Option("--gateway-workers", int, 4, "publish calls in flight each way", smoke=2),
    ),
)
async def graphql_vs_grpc(ctx: Context, out: ScenarioResult) -> None:
    """Load documents; time all_S over GraphQL and ListDocuments; publish both ways."""
    args = ctx.args
    loaded = creates(args.gateway_documents)
    over_graphql = creates(args.gateway_publishes, first=args.gateway_documents)
    over_grpc = creates(
        args.gateway_publishes, first=args.gateway_documents + args.gateway_publishes
    )
    async with (
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.address, options=CHANNEL_OPTIONS) as channel,
        httpx.AsyncClient(base_url=f"http://{node.http_address}", timeout=60) as http,
    ):
        schema_id = await publish_setup(channel, node)
        await wait_schema(channel, schema_id)
        ok_at = await paced_stream(channel, loaded, rate=1e9, batch=100)
        node.published += len(ok_at)
        await wait_count(channel, schema_id, args.gateway_documents)
        count = args.gateway_documents
        query = _all_query(schema_id)

        async def graphql_page(threshold: int) -> None:
            response = await http.post(
                "/graphql", json={"query": query, "variables": {"rank": threshold % count}}
            )
            body = response.json()
            if "errors" in body:
                raise RuntimeError(f"GraphQL error: {body['errors']}")

        stub = query_pb2_grpc.QueryServiceStub(channel)

        async def grpc_page(threshold: int) -> None:
            await stub.ListDocuments(
                q.ListDocumentsRequest(
                    schema_id=schema_id,
                    filters=[
                        q.Filter(
                            field="rank",
                            operator=q.FILTER_OPERATOR_GTE,
                            value=q.FilterValue(int_value=threshold % count),
                        )
                    ],
                    order_by=q.OrderBy(field="rank"),
                    page_size=25,
                ),
                timeout=30,
            )

        kinds = (graphql_page, grpc_page)
        await _timed(20, 5, kinds, random.Random(1))  # warm: schema built, query cached
        latencies = await _timed(args.gateway_calls, args.gateway_seconds, kinds, random.Random(7))
        for name, samples in zip(("GraphQL all_S", "gRPC ListDocuments"), latencies, strict=True):
            out.latency(f"{name} @ {count}", samples, series=f"{name} @ {count}")
        ratio = out.get(f"GraphQL all_S @ {count}/p99 ms")
        grpc_p99 = out.get(f"gRPC ListDocuments @ {count}/p99 ms")
        if ratio is not None and grpc_p99 is not None and grpc_p99.value > 0:
            out.notes["graphql_p99_over_grpc_p99"] = round(ratio.value / grpc_p99.value, 2)

        async def publish_graphql(request: pb.PublishRequest) -> None:
            variables = {"entry": request.entry.hex(), "operation": request.operation.hex()}
            response = await http.post("/graphql", json={"query": _PUBLISH, "variables": variables})
            body = response.json()
            if "errors" in body:
                raise RuntimeError(f"GraphQL publish error: {body['errors']}")

        ingest = ingest_pb2_grpc.IngestServiceStub(channel)

        async def publish_grpc(request: pb.PublishRequest) -> None:
            await ingest.Publish(request, timeout=60)

        workers = args.gateway_workers
        seconds = await _publish_all(over_graphql, workers, publish_graphql)
        out.rate("publish over GraphQL", len(over_graphql), seconds)
        seconds = await _publish_all(over_grpc, workers, publish_grpc)
        out.rate("unary Publish over gRPC", len(over_grpc), seconds)
        node.published += len(over_graphql) + len(over_grpc)
        out.notes["publish_workers"] = workers
