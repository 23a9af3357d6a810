"""The scenarios, registered on import in run order: baselines first (others refer to them)."""

from . import baselines, client_signing, codec, ingest, profiling, query

__all__ = ["baselines", "client_signing", "codec", "ingest", "profiling", "query"]
