"""The log formats: readable text with key=value fields, or one JSON object per record."""

from __future__ import annotations

import json
import logging
import sys

from pandanode.services.runtime.logs import JsonFormatter, TextFormatter


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "pandanode.services.ingest", logging.INFO, __file__, 1, "stored %d", (3,), None
    )
    made.__dict__.update(extra)
    return made


def test_json_records_carry_the_service_and_the_structured_fields_given_with_extra() -> None:
    line = JsonFormatter("ingest").format(
        record(document_id="0020ab", public_key="cd" * 32, reason="BACKLINK_MISMATCH", other=1)
    )
    data = json.loads(line)
    assert data["message"] == "stored 3"
    assert data["level"] == "INFO"
    assert data["logger"] == "pandanode.services.ingest"
    assert data["service"] == "ingest"
    assert data["document_id"] == "0020ab"
    assert data["public_key"] == "cd" * 32
    assert data["reason"] == "BACKLINK_MISMATCH"
    assert "other" not in data, "only the known fields, not whatever a record holds"
    assert "\n" not in line


def test_a_json_record_with_an_exception_stays_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record()
        failed.exc_info = sys.exc_info()
    line = JsonFormatter("query").format(failed)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_records_append_the_fields_after_the_message() -> None:
    line = TextFormatter().format(record(reason="SCHEMA_NOT_FOUND", public_key="ab"))
    assert line.endswith(
        "pandanode.services.ingest: stored 3 public_key=ab reason=SCHEMA_NOT_FOUND"
    )
    assert TextFormatter().format(record()).endswith("stored 3")
