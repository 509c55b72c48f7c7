"""The compiled decoder (``decode_event``'s fast path) against pydantic: whatever record it takes, pydantic takes
too and makes the same event of; what it declines, pydantic decides. Records are drawn near every edge of the
contract: lengths at their bounds, escapes, nulls, absent and repeated keys, odd numbers and odd timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.telemetry import TelemetryEvent
from models.timestamps import _MAX_EPOCH_MS as MAX_EPOCH_MS
from models.timestamps import to_epoch_ms
from streams.decode import _FAST_DECODER, MAX_EVENT_BYTES, InvalidRecord, _fast_decoder, decode_event, decode_events
from streams.simulator import SimulationSpec, simulate

TEXT_FIELDS = {
    "event_id": (1, 256),
    "account_id": (1, 256),
    "api_key_id": (1, 256),
    "ip": (2, 64),
    "endpoint": (1, 512),
    "method": (1, 16),
    "user_agent": (0, 2048),
    "device_id": (0, 256),
    "prompt": (0, 100_000),
    "resource_id": (0, 256),
}


def near(low: int, high: int) -> st.SearchStrategy[int]:
    """Lengths at and around a field's bounds, and in between."""
    return st.sampled_from([max(low - 1, 0), low, low + 1, high - 1, high, high + 1]) | st.integers(low, high)


def text_of_length(length: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from("aZ0 é猫😀\"\\\n\u2028\x00"), min_size=length, max_size=length)


ODD_TIMESTAMPS = [
    "2026-02-29T00:00:00Z",
    "2024-02-29T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:60Z",
    "2026-01-01T00:00:00.Z",
    "2026-1-01T00:00:00Z",
]


@st.composite
def timestamps(draw: st.DrawFn, plain: bool) -> Any:
    """RFC 3339 times in the plain shape (``plain``), or also in other forms, invalid dates and epoch numbers."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(  # 1966 to 9892
        microseconds=draw(st.integers(-(10**14), 25 * 10**16))
    )
    digits = draw(st.integers(0, 6 if plain else 7))
    fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 9))}"[:digits]
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + ("." + fraction if digits else "") + "Z"
    if plain:
        return text
    return draw(
        st.sampled_from([text, text.replace("T", " "), text.replace("Z", "+00:00"), text.lower(), text[:-1]])
        | st.sampled_from(ODD_TIMESTAMPS)
        | st.integers(-5, 10**13)
        | st.just(text)
    )


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """JSON number texts (and a few non-numbers) as a gateway might write them."""
    return draw(
        st.integers(-(10**20), 10**20).map(str)
        | st.floats(allow_nan=False, allow_infinity=False).map(repr)
        | st.sampled_from(["0", "-0", "-0.0", "1e2", "2.5E-3", "200.0", "599", "600", "99", "1e400", '"200"', "null",
                           "true", "123456789012345678901234567890"])
    )


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A record in the plain shape with its lengths anywhere in bounds, then up to three changes towards an edge:
    a length at or past a bound, null, a number for a string, an odd number or timestamp, a key gone or doubled."""
    members: dict[str, str] = {}
    for name, (low, high) in TEXT_FIELDS.items():
        members[name] = json.dumps(draw(text_of_length(draw(st.integers(max(low, 1), min(high, 40))))))
    members["ts"] = json.dumps(draw(timestamps(plain=True)))
    members["status"] = str(draw(st.integers(100, 599)))
    members["latency_ms"] = repr(draw(st.floats(0, 1e6)))
    members["credits"] = str(draw(st.integers(0, 50)))
    order = list(draw(st.permutations(list(members.items()))))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(members)))
        at = [key for key, _ in order].index(name) if name in dict(order) else None
        if name in TEXT_FIELDS:
            low, high = TEXT_FIELDS[name]
            value = draw(
                text_of_length(draw(near(low, min(high, 70)))).map(
                    lambda text: json.dumps(text, ensure_ascii=draw(st.booleans()))
                )
                | st.sampled_from(["null", "7", "true"])
            )
        elif name == "ts":
            value = json.dumps(draw(timestamps(plain=False)))
        else:
            value = draw(numbers())
        change = draw(st.sampled_from(["set", "set", "drop", "repeat", "unknown"]))
        if change == "set" and at is not None:
            order[at] = (name, value)
        elif change == "drop" and at is not None:
            del order[at]
        elif change == "repeat":
            order.append((name, value))
        elif change == "unknown":
            order.append(("tier", value))
    return ("{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in order) + "}").encode()


def assert_same_event(fast: Any, slow: TelemetryEvent) -> None:
    derived = dict(fast.__dict__)
    assert derived.pop("ts_ms") == to_epoch_ms(slow.ts)
    assert derived.pop("key_subject") == f"{slow.account_id}/{slow.api_key_id}"
    assert repr(derived) == repr(slow.__dict__)  # the same values, types and float signs, in the same order
    assert fast.ts.tzinfo is slow.ts.tzinfo
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (slow.__pydantic_extra__, slow.__pydantic_private__)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.key_subject == slow.key_subject  # the decoder's derivation is the model's


@settings(max_examples=400, deadline=None)
@given(record=records())
def test_what_the_fast_path_takes_pydantic_takes_and_makes_the_same_event_of(record: bytes) -> None:
    fast = _FAST_DECODER.decode(record)
    event("fast path" if fast is not None else "pydantic")
    if fast is not None:
        assert_same_event(fast, TelemetryEvent.model_validate_json(record))


@settings(max_examples=300, deadline=None)
@given(
    moment=st.integers(0, 8 * 10**15).map(lambda us: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)),
    digits=st.integers(0, 6),
)
def test_every_plain_timestamp_takes_the_fast_path_with_pydantics_time(moment: datetime, digits: int) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}"[: digits + 1] if digits else "") + "Z"
    record = json.dumps({"event_id": "e", "ts": text, "account_id": "a", "api_key_id": "k", "ip": "10.0.0.1",
                         "endpoint": "/v1/images", "method": "POST", "status": 200, "credits": 1}).encode()
    fast = _FAST_DECODER.decode(record)
    assert fast is not None
    assert_same_event(fast, TelemetryEvent.model_validate_json(record))


LAST_FAST_EPOCH_MS = (2**53 - 1) // 1000
"""The last epoch millisecond (in the year 2255) whose microseconds a double holds exactly: past it,
``datetime.timestamp()`` rounds them, and the fast path leaves the time to pydantic."""


def _epoch_ms_record(epoch_ms: int) -> bytes:
    return json.dumps({"event_id": "e", "ts": epoch_ms, "account_id": "a", "api_key_id": "k", "ip": "10.0.0.1",
                       "endpoint": "/v1/images", "method": "POST", "status": 200, "credits": 1}).encode()


@settings(max_examples=500, deadline=None)
@given(epoch_ms=st.sampled_from([0, 1, 999, 1000, LAST_FAST_EPOCH_MS - 1, LAST_FAST_EPOCH_MS])
       | st.integers(0, LAST_FAST_EPOCH_MS) | st.integers(1_500_000_000_000, 2_000_000_000_000))
def test_every_epoch_millisecond_timestamp_takes_the_fast_path_with_pydantics_time(epoch_ms: int) -> None:
    """Epoch milliseconds (a JSON integer), as gateways often write event times: pydantic reads them through a
    float, and CPython rounds the microsecond half to even from its fraction; the fast path must agree at every
    one."""
    record = _epoch_ms_record(epoch_ms)
    fast = _FAST_DECODER.decode(record)
    assert fast is not None
    assert_same_event(fast, TelemetryEvent.model_validate_json(record))


@settings(max_examples=200, deadline=None)
@given(epoch_ms=st.sampled_from([LAST_FAST_EPOCH_MS + 1, 181_308_005_023_221, MAX_EPOCH_MS])
       | st.integers(LAST_FAST_EPOCH_MS + 1, MAX_EPOCH_MS))
def test_epoch_milliseconds_past_a_doubles_microseconds_are_left_to_pydantic(epoch_ms: int) -> None:
    """181,308,005,023,221 (the year 7715) was decoded on the fast path with a ``ts_ms`` one below the model's."""
    record = _epoch_ms_record(epoch_ms)
    assert _FAST_DECODER.decode(record) is None
    assert decode_event(record) == TelemetryEvent.model_validate_json(record)


@pytest.mark.parametrize("epoch_ms", [-1, MAX_EPOCH_MS + 1, 2**63, -(2**63) - 1])
def test_epoch_milliseconds_out_of_range_are_left_to_pydantic(epoch_ms: int) -> None:
    record = _epoch_ms_record(epoch_ms)
    assert _FAST_DECODER.decode(record) is None
    with pytest.raises(InvalidRecord, match="ts"):
        decode_event(record)


def test_the_simulators_records_take_the_fast_path(tmp_path: Path) -> None:
    events, _ = simulate(SimulationSpec(accounts=5, duration_s=600, seed=3, scenarios_per_kind=0))
    rows = list(events)
    assert rows
    for row in rows:
        record = json.dumps(row).encode()
        fast = _FAST_DECODER.decode(record)
        assert fast is not None, record
        assert_same_event(fast, TelemetryEvent.model_validate_json(record))
        assert decode_event(record) == fast


def test_events_sharing_their_fields_set_and_extra_stay_apart_when_one_is_copied_with_changes() -> None:
    plain = b'{"event_id":"e1","ts":"2026-01-05T00:00:00Z","account_id":"a","api_key_id":"k","ip":"10.0.0.1",' \
        b'"endpoint":"/v1","method":"GET","status":200,"credits":1.0}'
    first, second = _FAST_DECODER.decode(plain), _FAST_DECODER.decode(plain.replace(b"e1", b"e2"))
    assert first is not None and second is not None
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__  # shared, as the decoder makes them
    changed = first.model_copy(update={"device_id": "d", "note": "extra"})
    assert (changed.device_id, changed.model_extra) == ("d", {"note": "extra"})
    assert "device_id" in changed.model_fields_set
    for untouched in (first, second):
        assert "device_id" not in untouched.model_fields_set
        assert untouched.model_extra == {}
    with pytest.raises(ValueError, match="frozen"):
        first.device_id = "d"  # type: ignore[misc]
    assert second.model_fields_set == TelemetryEvent.model_validate_json(plain).model_fields_set


def test_records_outside_the_plain_shape_are_still_decoded_or_refused_by_pydantic() -> None:
    base = {"event_id": "e", "ts": "2026-01-05T00:00:00Z", "account_id": "a", "api_key_id": "k", "ip": "10.0.0.1",
            "endpoint": "/v1/images", "method": "POST", "status": 200, "credits": 1}
    for other in ({"ts": 1767571200000.0}, {"ts": "2026-01-05T01:00:00+01:00"}, {"status": "200"}, {"tier": "pro"}):
        record = json.dumps({**base, **other}).encode()
        assert _FAST_DECODER.decode(record) is None
        assert decode_event(record) == TelemetryEvent.model_validate_json(record)
    record = json.dumps({**base, "status": 700}).encode()
    assert _FAST_DECODER.decode(record) is None
    with pytest.raises(ValueError, match="status"):
        decode_event(record)


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(records() | st.sampled_from([None, b"", b"{", b" " * (MAX_EVENT_BYTES + 1)]), max_size=12))
def test_a_batch_decodes_as_its_records_do_one_at_a_time(batch: list[bytes | None]) -> None:
    """Each record's event, or in an invalid record's place the error ``decode_event`` raises for it."""
    expected: list[Any] = []
    for record in batch:
        try:
            expected.append(decode_event(record))
        except InvalidRecord as error:
            expected.append(str(error))
    decoded = decode_events(batch)
    # Events compare by their __dict__, where only the fast path's hold ts_ms: each took the same path too.
    assert [str(item) if isinstance(item, InvalidRecord) else item for item in decoded] == expected


def test_a_model_the_fast_path_could_not_check_exactly_is_refused_at_import() -> None:
    class Patterned(BaseModel):
        model_config = ConfigDict(extra="allow", frozen=True)
        ts: datetime
        event_id: str = Field(pattern="^ev-")

    class Validated(BaseModel):
        model_config = ConfigDict(extra="allow", frozen=True)
        event_id: str

        @field_validator("event_id")
        @classmethod
        def shout(cls, value: str) -> str:
            return value.upper()

    class Aliased(BaseModel):
        model_config = ConfigDict(extra="allow", frozen=True)
        event_id: str = Field(alias="id")

    class Lowered(BaseModel):
        model_config = ConfigDict(extra="allow", frozen=True, str_to_lower=True)
        event_id: str

    class Thawed(BaseModel):  # its events could change, and the fast path's share their fields set
        model_config = ConfigDict(extra="allow")
        ts: datetime
        event_id: str

    for model in (Patterned, Validated, Aliased, Lowered, Thawed):
        with pytest.raises(TypeError, match="fast path"):
            _fast_decoder(model)
