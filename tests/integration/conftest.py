"""The integration tests run against a real Apache Kafka broker that this fixture starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.config import WardenConfig
from streams.cli import replay_file
from streams.records import Channel
from streams.simulator import SimulationSpec, write_simulation
from tests.integration.kafka_support import STARTED_WORKERS, broker


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


@pytest.fixture(autouse=True)
def kill_leftover_workers() -> Iterator[None]:
    """A test that fails before stopping its workers must not leave them running: a worker whose broker has
    gone retries for good, and one left by a failed CI run here spun at 40% of a core through the later tests."""
    yield
    while STARTED_WORKERS:
        worker = STARTED_WORKERS.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
