"""Shared fixtures: a small simulated telemetry file and an event factory for hand-made sequences."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from models.telemetry import TelemetryEvent
from streams.simulator import SimulationSpec, write_simulation

BASE_TIME = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="session")
def small_simulation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(events.jsonl, truth.jsonl) for 40 accounts over 4 hours with every scenario kind."""
    directory = tmp_path_factory.mktemp("sim")
    events, truth = directory / "events.jsonl", directory / "truth.jsonl"
    write_simulation(SimulationSpec(accounts=40, duration_s=4 * 3600, seed=11, scenarios_per_kind=2), events, truth)
    return events, truth


@pytest.fixture(scope="session")
def small_events(small_simulation: tuple[Path, Path]) -> list[TelemetryEvent]:
    events, _ = small_simulation
    return [TelemetryEvent.model_validate_json(line) for line in events.read_bytes().splitlines() if line.strip()]


EventFactory = Callable[..., TelemetryEvent]


@pytest.fixture
def make_event() -> EventFactory:
    """Build an event ``seconds`` after BASE_TIME; any field can be overridden."""
    counter = iter(range(1_000_000))

    def build(seconds: float = 0.0, **fields: Any) -> TelemetryEvent:
        data: dict[str, Any] = {
            "event_id": f"t-{next(counter):07d}",
            "ts": BASE_TIME + timedelta(seconds=seconds),
            "account_id": "acct-1",
            "api_key_id": "key-1",
            "ip": "203.0.113.7",
            "user_agent": "warden-sdk-python/1.4.2",
            "endpoint": "/v1/videos/text2video",
            "method": "POST",
            "status": 200,
            "credits": 10,
            "prompt": None,
            "resource_id": None,
        }
        data.update(fields)
        return TelemetryEvent.model_validate(data)

    return build
