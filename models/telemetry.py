"""TelemetryEvent: one record per API call on ``api.usage.v1``."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from models.timestamps import EventTimestamp, to_epoch_ms

T = TypeVar("T")


class _Derived(Generic[T]):
    """A value worked out from an event's fields on first use, then found in the event's ``__dict__``: the
    descriptor has no ``__set__``, so the stored value shadows it. ``functools.cached_property`` does the
    same under a lock on Python 3.11, which costs more than the work; every detector reads these."""

    def __init__(self, compute: Callable[[TelemetryEvent], T]) -> None:
        self.compute = compute
        self.name = ""

    def __set_name__(self, owner: type[TelemetryEvent], name: str) -> None:
        self.name = name

    def __get__(self, event: TelemetryEvent, owner: type[TelemetryEvent] | None = None) -> T:
        value = event.__dict__[self.name] = self.compute(event)
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

    ts_ms: ClassVar[_Derived[int]] = _Derived(lambda event: to_epoch_ms(event.ts))
    """Event time in epoch milliseconds, the unit every detector window uses."""
    key_subject: ClassVar[_Derived[str]] = _Derived(lambda event: KEY_SUBJECT_SEPARATOR.join(_KEY_SUBJECT_OF(event)))
    """The API key as a state subject, "account/key": a key's state stays scoped to its account. One string per
    event, shared by every detector's store that the event adds the key to."""


KEY_SUBJECT_PARTS = ("account_id", "api_key_id")
KEY_SUBJECT_SEPARATOR = "/"
"""``key_subject`` is these fields joined by this: stated once for the model and for the compiled decoder, which
works it out as it builds an event."""
_KEY_SUBJECT_OF: Callable[[TelemetryEvent], tuple[str, str]] = attrgetter(*KEY_SUBJECT_PARTS)
