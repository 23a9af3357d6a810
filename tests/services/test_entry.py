"""``pandanode proxy``'s routes: what it accepts, and one-line errors for what it does not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pandanode.services.entry import Route, parse_route, routes_of
from pandanode.services.runtime.settings import SettingsError


def test_a_route_names_a_service_and_its_upstreams_in_order() -> None:
    route = parse_route("query=10.0.0.5:2020, query-2.internal:2020")
    assert route == Route("query", ("10.0.0.5:2020", "query-2.internal:2020"))
    assert route.grpc_service == "pandanode.query.v1.QueryService"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("node=127.0.0.1:1", "SERVICE one of ingest, query, discovery"),
        ("query", "SERVICE one of ingest, query, discovery"),
        ("query=", "names no upstream address"),
        ("query=127.0.0.1", "is not host:port"),
        ("ingest=127.0.0.1:99999", "is not host:port"),
    ],
)
def test_a_route_that_cannot_be_used_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(SettingsError, match=reason):
        parse_route(text)


def test_a_service_routed_twice_is_refused() -> None:
    with pytest.raises(SettingsError, match="query is routed twice"):
        routes_of(["query=127.0.0.1:1", "query=127.0.0.1:2"])


def test_pandanode_proxy_with_a_bad_route_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pandanode.services.cli", "proxy", "--route", "nodes=x:1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "route 'nodes=x:1' must be SERVICE=HOST:PORT" in done.stderr
