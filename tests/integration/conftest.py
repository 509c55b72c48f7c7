"""The integration tests run against a real Apache Kafka broker that this fixture starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.config import WardenConfig
from streams.cli import replay_file
from streams.records import Channel
from streams.simulator import SimulationSpec, write_simulation
from tests.integration.kafka_support import broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[None]:
    broker("wipe")
    broker("start")
    yield
    broker("stop", "--wipe")


@pytest.fixture(scope="session")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], list[bytes]]:
    """A simulated file with every scenario kind, and the actions and findings replay gives on it."""
    directory = tmp_path_factory.mktemp("kafka-sim")
    events = directory / "events.jsonl"
    write_simulation(SimulationSpec(accounts=40, duration_s=4 * 3600, seed=23, scenarios_per_kind=2),
                     events, directory / "truth.jsonl")
    outputs = {
        Channel.ACTIONS: directory / "actions.jsonl",
        Channel.FINDINGS: directory / "findings.jsonl",
        Channel.DEAD_LETTERS: directory / "dlq.jsonl",
    }
    replay_file(WardenConfig(), events, outputs)
    actions = sorted(outputs[Channel.ACTIONS].read_bytes().splitlines())
    findings = sorted(outputs[Channel.FINDINGS].read_bytes().splitlines())
    assert actions, "the simulation must produce actions for the comparison to mean anything"
    return events, actions, findings
