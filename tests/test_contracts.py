"""The v1 contracts: timestamps, unknown fields, errors that name the field, committed schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from models import EnforcementAction, Finding, TelemetryEvent
from models.schemas import CONTRACTS, SCHEMA_DIR, schema_text

EVENT = {
    "event_id": "e-1",
    "ts": "2026-01-05T10:00:00Z",
    "account_id": "acct-1",
    "api_key_id": "key-1",
    "ip": "198.51.100.4",
    "user_agent": None,
    "device_id": None,
    "endpoint": "/v1/videos/{id}",
    "method": "GET",
    "status": 200,
    "latency_ms": 12.5,
    "credits": 0,
    "prompt": None,
    "resource_id": "vid_1",
}


@pytest.mark.parametrize(
    "ts",
    ["2026-01-05T10:00:00Z", "2026-01-05T12:00:00+02:00", "2026-01-05T05:00:00-05:00", 1767607200000, "1767607200000"],
)
def test_ts_accepts_rfc3339_and_epoch_ms_and_normalises_to_utc(ts: object) -> None:
    event = TelemetryEvent.model_validate({**EVENT, "ts": ts})
    assert event.ts == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert event.ts.utcoffset() is not None and event.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert json.loads(event.model_dump_json())["ts"] == "2026-01-05T10:00:00.000Z"


@pytest.mark.parametrize("ts", ["2026-01-05T10:00:00", "yesterday", True, -5, None, 10**17, "2026-13-01T00:00:00Z"])
def test_bad_ts_is_refused_naming_the_field(ts: object) -> None:
    with pytest.raises(ValidationError) as info:
        TelemetryEvent.model_validate({**EVENT, "ts": ts})
    assert [error["loc"][0] for error in info.value.errors()] == ["ts"]


def test_unknown_fields_are_kept() -> None:
    event = TelemetryEvent.model_validate({**EVENT, "region": "eu-west", "client": {"sdk": "py"}})
    dumped = json.loads(event.model_dump_json())
    assert dumped["region"] == "eu-west" and dumped["client"] == {"sdk": "py"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "ok"), ("credits", -1), ("account_id", ""), ("status", 42), ("latency_ms", -3)],
)
def test_every_validation_error_names_its_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        TelemetryEvent.model_validate({**EVENT, field: value})
    assert {error["loc"][0] for error in info.value.errors()} == {field}


def test_missing_fields_are_each_named() -> None:
    with pytest.raises(ValidationError) as info:
        TelemetryEvent.model_validate({"event_id": "e"})
    missing = {error["loc"][0] for error in info.value.errors()}
    assert {"ts", "account_id", "api_key_id", "ip", "endpoint", "method", "status", "credits"} <= missing


def test_finding_and_action_refuse_unknown_fields() -> None:
    for model in (Finding, EnforcementAction):
        with pytest.raises(ValidationError) as info:
            model.model_validate({"surprise": 1})
        assert any(error["loc"] == ("surprise",) for error in info.value.errors())


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_committed_schema_files_match_the_models(name: str) -> None:
    committed = (SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8")
    assert committed == schema_text(name), f"run `warden schema --write` to refresh models/schemas/{name}.json"


def test_event_schema_lists_every_contract_field() -> None:
    properties = json.loads(schema_text("telemetry_event"))["properties"]
    assert set(EVENT) <= set(properties)
