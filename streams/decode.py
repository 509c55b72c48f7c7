"""Bytes → TelemetryEvent, or a dead letter that keeps the original bytes and says why."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from pydantic import ValidationError

from models.config import format_validation_error
from models.telemetry import TelemetryEvent
from streams.records import Channel, OutputRecord, SourceRecord

MAX_EVENT_BYTES = 1 << 20
"""No API call's telemetry is this large; bigger records are refused before parsing."""


class InvalidRecord(ValueError):
    """Why a record is not a TelemetryEvent: the field and the reason."""


def decode_event(value: bytes) -> TelemetryEvent:
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidRecord(f"record too large: {len(value)} bytes > {MAX_EVENT_BYTES}")
    try:
        return TelemetryEvent.model_validate_json(value)
    except ValidationError as error:
        raise InvalidRecord(format_validation_error(error).replace("\n", "; ")) from None


def dead_letter(record: SourceRecord, reason: str, source_name: str) -> OutputRecord:
    """A dead letter keeps the exact original bytes; where it came from and why travel in headers."""
    headers = (
        ("reason", reason.encode()),
        ("source", source_name.encode()),
        ("partition", str(record.partition).encode()),
        ("offset", str(record.offset).encode()),
    )
    return OutputRecord(Channel.DEAD_LETTERS, record.key, record.value, headers)


def dead_letter_json(letter: OutputRecord) -> bytes:
    """A dead letter as one JSON line (file sinks): the headers as fields, the original as text or base64."""
    fields: dict[str, Any] = {name: value.decode() for name, value in letter.headers}
    document: dict[str, Any] = {
        "source": fields.get("source"),
        "partition": int(fields.get("partition", 0)),
        "offset": int(fields.get("offset", 0)),
        "reason": fields.get("reason"),
        "size": len(letter.value or b""),
    }
    try:
        document["original"] = (letter.value or b"").decode("utf-8")
    except UnicodeDecodeError:
        document["original_base64"] = base64.b64encode(letter.value or b"").decode("ascii")
    return orjson.dumps(document)
