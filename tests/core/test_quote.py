"""core.errors.quote: what an error message repeats of an input is a bounded slice."""

from __future__ import annotations

from pandanode.core.errors import QUOTE_LIMIT, quote


def test_short_values_are_quoted_like_repr() -> None:
    assert quote("venue") == repr("venue")
    assert quote(b"\x00\x01") == repr(b"\x00\x01")
    assert quote(42) == "42"


def test_long_text_is_cut_to_the_limit_and_says_how_long_it_was() -> None:
    quoted = quote("x" * 10_000)
    assert quoted == repr("x" * QUOTE_LIMIT) + "… (10000 characters)"
    assert quote(b"y" * 500).endswith("… (500 bytes)")


def test_long_reprs_of_other_values_are_cut() -> None:
    quoted = quote(list(range(10_000)))
    assert len(quoted) <= 2 * QUOTE_LIMIT + 1
    assert quoted.endswith("…")
