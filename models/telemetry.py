"""TelemetryEvent: one record per API call on ``api.usage.v1``."""

from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

from models.timestamps import EventTimestamp, to_epoch_ms


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

    @cached_property
    def ts_ms(self) -> int:
        """Event time in epoch milliseconds, the unit every detector window uses."""
        return to_epoch_ms(self.ts)
