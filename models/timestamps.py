"""Event-time parsing shared by every contract: RFC 3339 strings or epoch milliseconds, always UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Discriminator,
    PlainSerializer,
    Tag,
    WithJsonSchema,
)

_MIN_EPOCH_MS = 0
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def parse_timestamp(value: Any) -> datetime:
    """Normalise an event time to an aware UTC datetime.

    Accepts RFC 3339 strings (with ``Z`` or an offset), epoch milliseconds as int/float,
    and aware datetimes. Naive times are refused: guessing a zone would shift windows.
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
            raise ValueError(f"epoch milliseconds out of range: {value}")
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_timestamp(int(text))
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}") from None
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp needs a timezone offset (RFC 3339), e.g. 2026-01-01T00:00:00Z")
        return value.astimezone(UTC)
    raise ValueError(f"timestamp must be an RFC 3339 string or epoch milliseconds, got {type(value).__name__}")


def format_timestamp(value: datetime) -> str:
    """RFC 3339 with millisecond precision and a ``Z`` suffix: stable bytes for replay."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000.0, tz=UTC)


def _epoch_ms_to_utc(value: float) -> datetime:
    if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
        raise ValueError(f"epoch milliseconds out of range: {value}")
    return datetime.fromtimestamp(value / 1000.0, tz=UTC)


def _aware_to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _timestamp_kind(value: Any) -> str:
    return "epoch_ms" if isinstance(value, int | float) and not isinstance(value, bool) else "rfc3339"


# Parsing happens in pydantic-core (Rust), several microseconds per event faster than a Python
# validator. Numbers are epoch milliseconds (range-checked); anything else must be an RFC 3339
# time with an offset (AwareDatetime refuses naive times). A validation error's location names
# the field and the form it was read as, e.g. ``ts.rfc3339: Input should have timezone info``.
_FAST_TIMESTAMP = Annotated[
    Annotated[Annotated[float, AfterValidator(_epoch_ms_to_utc)], Tag("epoch_ms")]
    | Annotated[Annotated[AwareDatetime, AfterValidator(_aware_to_utc)], Tag("rfc3339")],
    Discriminator(_timestamp_kind),
]

EVENT_TIMESTAMP_TYPE = get_args(_FAST_TIMESTAMP)[0]
"""The event timestamp's type as a model field reports it (its ``annotation``): the tagged union."""

UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0}]},
        mode="validation",
    ),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
"""A datetime field that accepts RFC 3339 or epoch ms and serialises as RFC 3339 UTC."""

# The hot-path variant for telemetry input: the same contract as UtcTimestamp, parsed in pydantic-core.
# Type checkers see what the validators produce (a datetime), pydantic sees the tagged union.
if TYPE_CHECKING:
    EventTimestamp = datetime
else:
    EventTimestamp = Annotated[
        _FAST_TIMESTAMP,
        PlainSerializer(format_timestamp, return_type=str, when_used="json"),
        WithJsonSchema(
            {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0}]},
            mode="validation",
        ),
        WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
    ]
