"""The one table between errors and gRPC statuses (used by the services and the client)."""

from __future__ import annotations

import pytest

from pandanode.core.errors import (
    ERROR_CLASSES,
    STATUS_CODES,
    KeyFileError,
    OperationDecodeError,
    PandanodeError,
    Reason,
    SchemaError,
    SchemaNotFoundError,
    error_class,
    status_code_name,
)

ROWS = [
    (code, reason, cls)
    for code, (_, by_reason) in ERROR_CLASSES.items()
    for reason, cls in by_reason.items()
]


@pytest.mark.parametrize(("code", "reason", "cls"), ROWS)
def test_an_error_raised_as_the_table_says_is_reported_with_the_status_it_is_read_back_from(
    code: str, reason: Reason, cls: type[PandanodeError]
) -> None:
    if (code, reason) == ("NOT_FOUND", Reason.SCHEMA_NOT_FOUND):
        # A lookup's NOT_FOUND for a schema is read back as the schema error it stands for.
        assert cls is SchemaNotFoundError
        return
    assert status_code_name(cls("problem", reason)) == code
    assert error_class(code, reason) is cls


def test_a_status_without_a_known_reason_is_read_back_as_its_familys_class() -> None:
    for code, (fallback, _) in ERROR_CLASSES.items():
        assert error_class(code, None) is fallback
        assert STATUS_CODES[fallback] == code


def test_a_reason_is_read_back_by_its_status_code() -> None:
    assert error_class("INVALID_ARGUMENT", Reason.INVALID_FIELD_VALUE) is OperationDecodeError
    assert error_class("FAILED_PRECONDITION", Reason.INVALID_FIELD_VALUE) is SchemaError
    assert error_class("CANCELLED", Reason.INVALID_FIELD_VALUE) is None


def test_an_error_of_no_listed_family_is_internal() -> None:
    assert status_code_name(KeyFileError("no key")) == "INTERNAL"
    assert status_code_name(ValueError("not ours")) == "INTERNAL"
