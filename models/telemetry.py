"""TelemetryEvent: one record per API call on ``api.usage.v1``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from models.timestamps import EventTimestamp, to_epoch_ms


class _EpochMs:
    """``ts`` in epoch milliseconds, computed on first use and then found in the event's ``__dict__``: this
    descriptor has no ``__set__``, so the stored value shadows it. ``functools.cached_property`` does the
    same under a lock on Python 3.11, which costs more than the arithmetic; every detector reads it."""

    def __get__(self, event: TelemetryEvent, owner: type[TelemetryEvent] | None = None) -> int:
        value: int = to_epoch_ms(event.ts)
        event.__dict__["ts_ms"] = value
        return value


class TelemetryEvent(BaseModel):
    """One API call as the gateway saw it. Unknown fields are kept (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=False)

    event_id: str = Field(min_length=1, max_length=256, description="Unique id of this call")
    ts: EventTimestamp = Field(description="Event time: RFC 3339 or epoch milliseconds; normalised to UTC")
    account_id: str = Field(min_length=1, max_length=256)
    api_key_id: str = Field(min_length=1, max_length=256, description="The key's id, never the secret")
    ip: str = Field(min_length=2, max_length=64, description="Client IP address (v4 or v6)")
    user_agent: str | None = Field(default=None, max_length=2048)
    device_id: str | None = Field(default=None, max_length=256)
    endpoint: str = Field(min_length=1, max_length=512, description="Route template, e.g. /v1/videos/{id}")
    method: str = Field(min_length=1, max_length=16)
    status: int = Field(ge=100, le=599, description="HTTP status code")
    latency_ms: float | None = Field(default=None, ge=0)
    credits: float = Field(ge=0, description="Cost units charged for the call")
    prompt: str | None = Field(default=None, max_length=100_000)
    resource_id: str | None = Field(default=None, max_length=256, description="Object created or read")

    ts_ms: ClassVar[_EpochMs] = _EpochMs()
    """Event time in epoch milliseconds, the unit every detector window uses (worked out on first use)."""
