"""NATS URLs in messages and logs never carry a password or token."""

from __future__ import annotations

import pytest

from pandanode.services.runtime.bus import connect_bus, redact_url
from pandanode.services.runtime.errors import UnavailableError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://alice:s3cret@nats.example:4222", "nats://alice:***@nats.example:4222"),
        ("nats://t0ken@nats.example", "nats://***@nats.example"),
        ("tls://bob:pw@[::1]:4443", "tls://bob:***@::1:4443"),
        (
            "nats://a:pw@n1:4222,nats://a:pw@n2:4222",
            "nats://a:***@n1:4222,nats://a:***@n2:4222",
        ),
    ],
)
def test_redact_url_hides_passwords_and_tokens(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def test_an_unreachable_nats_server_is_named_without_its_password() -> None:
    with pytest.raises(UnavailableError) as raised:
        await connect_bus("nats://alice:s3cret@127.0.0.1:1", timeout=0.5)
    assert "s3cret" not in raised.value.message
    assert "alice:***@127.0.0.1:1" in raised.value.message
