"""Keyset pages of the in-memory lists (schemas, peers) and their authenticated tokens."""

from __future__ import annotations

import base64

import pytest

from pandanode.core.errors import InvalidRequestError, Reason
from pandanode.services.runtime.paging import DEFAULT_PAGE_SIZE, KeysetPages

KEYS = [f"k{i:04d}" for i in range(250)]


def _all_pages(pages: KeysetPages, items: list[str], page_size: int) -> list[list[str]]:
    got: list[list[str]] = []
    token = ""
    while True:
        page, token = pages.page(items, lambda key: key, page_size, token)
        got.append(page)
        if not token:
            return got


def test_pages_hold_page_size_items_in_key_order_and_the_last_has_no_token() -> None:
    got = _all_pages(KeysetPages("things"), KEYS, 100)
    assert [len(page) for page in got] == [100, 100, 50]
    assert [key for page in got for key in page] == KEYS


def test_page_size_zero_is_the_default_and_a_larger_one_is_lowered_to_the_maximum() -> None:
    pages = KeysetPages("things", max_page_size=120)
    assert len(pages.page(KEYS, lambda key: key, 0, "")[0]) == DEFAULT_PAGE_SIZE
    assert len(pages.page(KEYS, lambda key: key, 10_000, "")[0]) == 120


def test_an_exact_multiple_of_the_page_size_ends_without_an_empty_page() -> None:
    got = _all_pages(KeysetPages("things"), KEYS[:200], 100)
    assert [len(page) for page in got] == [100, 100]
    assert _all_pages(KeysetPages("things"), [], 100) == [[]]


def test_items_removed_or_added_between_pages_neither_repeat_nor_hide_others() -> None:
    pages = KeysetPages("things")
    first, token = pages.page(KEYS, lambda key: key, 100, "")
    changed = [key for key in KEYS if key != "k0100"] + ["k0099x"]
    changed.sort()
    second, _ = pages.page(changed, lambda key: key, 100, token)
    assert second[0] == "k0099x"
    assert not set(first) & set(second)


def _rejected(pages: KeysetPages, token: str) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as raised:
        pages.page(KEYS, lambda key: key, 10, token)
    error = raised.value
    assert error.reason == Reason.INVALID_PAGE_TOKEN
    assert error.metadata["field"] == "page_token"
    assert [violation.field for violation in error.field_violations] == ["page_token"]
    return error


def test_a_tampered_foreign_or_garbage_token_is_invalid_page_token_on_the_page_token_field() -> (
    None
):
    pages = KeysetPages("things", secret=b"s" * 32)
    _, token = pages.page(KEYS, lambda key: key, 10, "")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-3] ^= 1  # a different last key, same mac
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert "altered" in _rejected(pages, tampered).message
    other_secret = KeysetPages("things", secret=b"t" * 32).token("k0005")
    assert "altered" in _rejected(pages, other_secret).message
    other_list = KeysetPages("peers", secret=b"s" * 32).token("k0005")
    assert "another list" in _rejected(pages, other_list).message
    assert "base64" in _rejected(pages, "not a token!").message
    assert "longer" in _rejected(pages, "A" * 5000).message


def test_tokens_of_a_kept_secret_stay_valid_in_a_new_instance() -> None:
    token = KeysetPages("schemas", secret=b"s" * 32).page(KEYS, lambda key: key, 10, "")[1]
    page, _ = KeysetPages("schemas", secret=b"s" * 32).page(KEYS, lambda key: key, 10, token)
    assert page[0] == "k0010"
