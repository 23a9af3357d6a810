"""Malformed and non-canonical inputs: we refuse what p2panda-js refuses, accept what it accepts.

The cases live in ``cases.py`` (spec §2.4, §3.3, §11.7). p2panda-js answers for all of them come
from one batch request per table; each case is still its own test id.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pandanode.core import SchemaIdError, decode_entry, decode_operation

from .cases import (
    ENTRIES_ACCEPTED,
    ENTRIES_REJECTED,
    OPERATIONS_ACCEPTED,
    OPERATIONS_REJECTED,
    OPERATIONS_WITH_MALFORMED_SCHEMA_ID,
)
from .oracle_client import JsEntry, JsOperation, Oracle, Outcome
from .support import entry_json, expect_decode_error, normalise_js_operation, operation_json

pytestmark = pytest.mark.interop


def _decode_all(
    oracle: Oracle, op: str, key: str, cases: Mapping[str, bytes]
) -> dict[str, Outcome]:
    answers = oracle.batch([(op, {key: data.hex()}) for data in cases.values()])
    return dict(zip(cases, answers, strict=True))


@pytest.fixture(scope="module")
def js_entries(oracle: Oracle) -> dict[str, Outcome]:
    return _decode_all(oracle, "decodeEntry", "entry", {**ENTRIES_REJECTED, **ENTRIES_ACCEPTED})


@pytest.fixture(scope="module")
def js_operations(oracle: Oracle) -> dict[str, Outcome]:
    cases = {**OPERATIONS_REJECTED, **OPERATIONS_WITH_MALFORMED_SCHEMA_ID, **OPERATIONS_ACCEPTED}
    return _decode_all(oracle, "decodeOperation", "operation", cases)


@pytest.mark.parametrize("case", ENTRIES_REJECTED)
def test_malformed_entry_is_rejected_by_js_and_raises_decode_error(
    js_entries: dict[str, Outcome], case: str
) -> None:
    data = ENTRIES_REJECTED[case]
    assert not js_entries[case].accepted, f"p2panda-js accepted {data.hex()}"
    expect_decode_error(decode_entry, data)


@pytest.mark.parametrize("case", ENTRIES_ACCEPTED)
def test_lenient_entry_is_accepted_by_js_and_us_with_equal_values(
    js_entries: dict[str, Outcome], case: str
) -> None:
    data = ENTRIES_ACCEPTED[case]
    js: JsEntry = js_entries[case].unwrap()
    ours = decode_entry(data)
    assert entry_json(ours) == js
    assert ours.raw == data


@pytest.mark.parametrize("case", OPERATIONS_REJECTED)
def test_malformed_operation_is_rejected_by_js_and_raises_decode_error(
    js_operations: dict[str, Outcome], case: str
) -> None:
    data = OPERATIONS_REJECTED[case]
    assert not js_operations[case].accepted, f"p2panda-js accepted {data.hex()}"
    expect_decode_error(decode_operation, data)


_JS_DECODE_PREFIX = "Could not decode operation: "


@pytest.mark.parametrize("case", OPERATIONS_WITH_MALFORMED_SCHEMA_ID)
def test_operation_with_malformed_schema_id_is_rejected_by_js_and_our_decoder_alike(
    js_operations: dict[str, Outcome], case: str
) -> None:
    # Both decoders parse the schema id while decoding and refuse it with p2panda's message.
    data = OPERATIONS_WITH_MALFORMED_SCHEMA_ID[case]
    js = js_operations[case]
    assert js.error is not None, f"p2panda-js accepted {data.hex()}"
    error = expect_decode_error(decode_operation, data)
    assert isinstance(error, SchemaIdError)
    assert _JS_DECODE_PREFIX + error.message == js.error


@pytest.mark.parametrize("case", OPERATIONS_ACCEPTED)
def test_lenient_operation_is_accepted_by_js_and_us_with_equal_values(
    js_operations: dict[str, Outcome], case: str
) -> None:
    data = OPERATIONS_ACCEPTED[case]
    js: JsOperation = js_operations[case].unwrap()
    assert operation_json(decode_operation(data)) == normalise_js_operation(js)
