"""The scenarios, registered on import in run order: baselines first (others refer to them).

The peer baselines come after ingest: they compare with unary Publish measured before them.
"""

from . import (
    baselines,
    cli,
    client_signing,
    codec,
    distributed,
    gateway,
    ingest,
    memory,
    peers,
    profiling,
    query,
    replication,
)

__all__ = [
    "baselines",
    "cli",
    "client_signing",
    "codec",
    "distributed",
    "gateway",
    "ingest",
    "memory",
    "peers",
    "profiling",
    "query",
    "replication",
]
