"""Placeholder, replaced by the GraphQL API."""

from __future__ import annotations

from typing import Any

from .upstream import Upstreams

__all__ = ["GraphQLApi"]


class GraphQLApi:
    """Runs GraphQL requests against the upstream services."""

    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams

    async def execute(
        self, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> dict[str, Any]:
        """Run one request."""
        return {"data": {"hello": "pandanode"}}
