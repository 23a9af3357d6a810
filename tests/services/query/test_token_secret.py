"""The page token secret in the data directory: made once, kept, never half-written."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pandanode.services.query.token_secret import (
    PAGE_TOKEN_SECRET_FILE,
    TokenSecretError,
    load_or_create_token_secret,
)


def test_the_secret_is_made_on_first_use_private_and_the_same_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "data" / PAGE_TOKEN_SECRET_FILE
    secret = load_or_create_token_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token_secret(path) == secret
    assert [p.name for p in path.parent.iterdir()] == [PAGE_TOKEN_SECRET_FILE]


def test_another_data_directory_gets_another_secret(tmp_path: Path) -> None:
    first = load_or_create_token_secret(tmp_path / "a" / PAGE_TOKEN_SECRET_FILE)
    second = load_or_create_token_secret(tmp_path / "b" / PAGE_TOKEN_SECRET_FILE)
    assert first != second


@pytest.mark.parametrize("content", ["", "not hex\n", "ab" * 16 + "\n", "ab" * 33])
def test_a_damaged_secret_file_is_an_error_that_says_what_to_do(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / PAGE_TOKEN_SECRET_FILE
    path.write_text(content)
    with pytest.raises(TokenSecretError, match="delete it to make a new one"):
        load_or_create_token_secret(path)
