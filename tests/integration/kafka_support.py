"""Helpers for integration tests against the real local broker (deploy/kafka/kafka.sh)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.config import load_config
from streams.kafka_io import ensure_topics

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
PORT = int(os.environ.get("WARDEN_TEST_KAFKA_PORT", "19092"))
BOOTSTRAP = f"127.0.0.1:{PORT}"
BROKER_ENV = {
    **os.environ,
    "WARDEN_KAFKA_PORT": str(PORT),
    "WARDEN_KAFKA_CONTROLLER_PORT": str(PORT + 1),
    "WARDEN_KAFKA_DIR": f"/tmp/warden-kafka-test-{PORT}",
}


def broker(command: str, *args: str) -> None:
    subprocess.run(["bash", str(KAFKA_SH), command, *args], env=BROKER_ENV, check=True, timeout=300)


@dataclass
class Deployment:
    """One isolated Warden deployment: its own topics and consumer group on the shared broker."""

    directory: Path
    partitions: int = 4
    batch_size: int = 500
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.topics = {
            "telemetry": f"api.usage.v1.{suffix}",
            "findings": f"warden.findings.v1.{suffix}",
            "actions": f"enforcement.actions.v1.{suffix}",
            "dead_letters": f"warden.dlq.v1.{suffix}",
            "state": f"warden.state.v5.{suffix}",
        }
        self.group = f"warden-{suffix}"
        config = {
            "pipeline": {"batch_size": self.batch_size},
            "kafka": {
                "bootstrap_servers": BOOTSTRAP,
                "group_id": self.group,
                "topics": self.topics,
                "partitions": self.partitions,
                "transaction_timeout_ms": 10_000,
                "session_timeout_ms": 6_000,
                "poll_timeout_ms": 200,
                **self.extra,
            },
            "server": {"port": 0},
        }
        self.config_path = self.directory / f"warden-{suffix}.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        # Topics exist before anything is produced, as in a deployment (auto-create is off).
        ensure_topics(load_config(self.config_path).kafka)

    def start_worker(self, instance: str) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"worker-{instance}.log", "ab")  # noqa: SIM115 - owned by the process
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "run", "--config", str(self.config_path), "--instance-id", instance],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        STARTED_WORKERS.append(worker)
        return worker

    def wait_for_restores(self, instance: str, count: int, timeout_s: float = 60.0) -> list[tuple[int, int]]:
        """Wait until a worker's log shows ``count`` partition restores; (state records, input records replayed)
        of each, in order."""
        log = self.directory / f"worker-{instance}.log"
        deadline = time.monotonic() + timeout_s
        while True:
            restores = [(int(restored), int(replayed)) for restored, replayed in RESTORE_LINE.findall(log.read_bytes())]
            if len(restores) >= count:
                return restores
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {instance}: {len(restores)} of {count} restores in {timeout_s}s")
            time.sleep(0.2)

    def produce_lines(self, lines: list[bytes], keyed: bool = True) -> None:
        """Produce raw telemetry lines, keyed by account_id as the gateway does (junk gets no key)."""
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, acks="all")
        for line in lines:
            key = None
            if keyed:
                try:
                    key = str(json.loads(line)["account_id"]).encode()
                except (ValueError, KeyError, TypeError):
                    key = None
            producer.send(self.topics["telemetry"], value=line, key=key)
        producer.flush()
        producer.close()

    def input_end_offsets(self) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
        try:
            partitions = [TopicPartition(self.topics["telemetry"], p) for p in range(self.partitions)]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()

    def committed_offsets(self) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=self.group, enable_auto_commit=False)
        try:
            result = {}
            for partition in range(self.partitions):
                committed = consumer.committed(TopicPartition(self.topics["telemetry"], partition))
                result[partition] = committed or 0
            return result
        finally:
            consumer.close()

    def wait_until_consumed(self, timeout_s: float = 180.0) -> None:
        target = self.input_end_offsets()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.committed_offsets() == target:
                return
            time.sleep(0.5)
        raise AssertionError(f"group did not catch up: committed {self.committed_offsets()} target {target}")

    def read_committed(self, channel: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        """Everything committed on one output topic: (key, value, headers)."""
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, isolation_level="read_committed",
                                 enable_auto_commit=False)
        try:
            partitions = [TopicPartition(self.topics[channel], p) for p in range(self.partitions)]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            out: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                assert time.monotonic() < deadline, "could not read the topic to its end"
                for records in consumer.poll(timeout_ms=500).values():
                    out.extend((r.key, r.value, dict(r.headers or [])) for r in records)
            return out
        finally:
            consumer.close()


RESTORE_LINE = re.compile(rb"partition \d+ assigned: restored (\d+) state records, replaying (\d+) input records")


STARTED_WORKERS: list[subprocess.Popen[bytes]] = []
"""Every worker a test started: the ``kill_leftover_workers`` fixture kills those a failed test left running."""


def stop_worker(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout_s)


def sorted_values(records: list[tuple[bytes | None, bytes, dict[str, bytes]]]) -> list[bytes]:
    return sorted(value for _, value, _ in records)
