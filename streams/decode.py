"""Bytes → TelemetryEvent, or a dead letter that keeps the original bytes and says why."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from pydantic import ValidationError

from models.config import format_validation_error
from models.telemetry import TelemetryEvent
from streams.records import SourceRecord

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


def dead_letter(record: SourceRecord, reason: str, source_name: str) -> bytes:
    """One JSON line for the dead-letter output: where the record came from, why, and its exact bytes."""
    letter: dict[str, Any] = {
        "source": source_name,
        "partition": record.partition,
        "offset": record.offset,
        "reason": reason,
        "size": len(record.value),
    }
    try:
        letter["original"] = record.value.decode("utf-8")
    except UnicodeDecodeError:
        letter["original_base64"] = base64.b64encode(record.value).decode("ascii")
    return orjson.dumps(letter)
