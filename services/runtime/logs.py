"""Logging of every pandanode process: readable text or one JSON object per line.

``configure_logging`` is called once per process (``up``, each ``serve`` child, ``query
rebuild``). Structured fields are passed with ``extra=`` on the log calls that have them
(:data:`FIELDS`); the text format shows them as ``key=value`` after the message, the JSON format
as keys of the object, always with the ``service`` the process runs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

__all__ = ["FIELDS", "JsonFormatter", "TextFormatter", "configure_logging", "json_logging"]

FIELDS: Final = ("document_id", "public_key", "operation_id", "reason", "peer", "address")
"""Structured fields a log call may pass with ``extra=``."""

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


class TextFormatter(logging.Formatter):
    """The classic line, with the structured fields of the record appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102 - see logging.Formatter
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        extra = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {extra}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, service, the fields.

    Args:
        service: What this process runs (``ingest``, ``query``, ``node`` for ``pandanode up``).
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102 - see logging.Formatter
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": getattr(record, "service", self._service),
            **_fields(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


_json = False
_handler: logging.Handler | None = None


def json_logging() -> bool:
    """Whether this process logs JSON (messages meant for stderr should then go to the log)."""
    return _json


def configure_logging(level: str, log_format: str, service: str) -> None:
    """Send every record at ``level`` and above to stderr, as text or JSON lines.

    Args:
        level: A logging level name (validated by the settings).
        log_format: ``text`` or ``json``.
        service: The ``service`` field of JSON records.
    """
    global _json, _handler
    _json = log_format == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if _json else TextFormatter())
    root = logging.getLogger()
    if _handler is not None:  # configured before in this process: replace, do not add
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler
