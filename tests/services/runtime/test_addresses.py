from __future__ import annotations

import pytest

from pandanode.services.runtime.addresses import split_host_port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:2020", ("127.0.0.1", 2020)),
        ("node.example:65535", ("node.example", 65535)),
        ("[::1]:1", ("[::1]", 1)),
    ],
)
def test_split_host_port_splits_at_the_last_colon_and_keeps_the_host_as_written(
    address: str, expected: tuple[str, int]
) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", ":2020", "host:", "host:0", "host:65536", "host:-1", "host:2O20", "host:²"],
)
def test_split_host_port_rejects_what_is_not_host_and_a_port_from_1_to_65535(
    address: str,
) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_host_port(address)


def test_split_host_port_allows_port_zero_and_an_empty_host_only_when_asked() -> None:
    assert split_host_port("127.0.0.1:0", allow_port_zero=True) == ("127.0.0.1", 0)
    assert split_host_port(":2020", allow_empty_host=True) == ("", 2020)


def test_split_host_port_quotes_at_most_80_characters_of_a_bad_address() -> None:
    with pytest.raises(ValueError) as rejected:
        split_host_port("x" * 500)
    assert len(str(rejected.value)) < 120
