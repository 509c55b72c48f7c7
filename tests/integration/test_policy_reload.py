"""``warden run`` and the policy: SIGHUP reloads the config (a bad one is refused), reversals arrive on their topic."""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from models.action import ActionReversal, EnforcementAction
from tests.conftest import BASE_TIME
from tests.integration.kafka_support import BOOTSTRAP, Deployment, stop_worker

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("kafka_broker")]


def burst(hours: float, first_id: int) -> list[bytes]:
    """A quiet half hour of one account, then 400 calls in 40 seconds: a traffic finding."""
    start = BASE_TIME + timedelta(hours=hours)
    times = [start + timedelta(minutes=m) for m in range(30)]
    times += [start + timedelta(minutes=31, seconds=i / 10) for i in range(400)]
    return [
        json.dumps({"event_id": f"e{first_id + n}", "ts": ts.isoformat(), "account_id": "acct-reload",
                    "api_key_id": "key-1", "ip": "203.0.113.7", "user_agent": "sdk/1",
                    "endpoint": "/v1/videos/text2video", "method": "POST", "status": 200, "credits": 1}).encode()
        for n, ts in enumerate(times)
    ]


def wait_for_log(log: Path, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text.encode() in log.read_bytes():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {log}")


def actions(deployment: Deployment) -> list[EnforcementAction]:
    found = [EnforcementAction.model_validate_json(value) for _, value, _ in deployment.read_committed("actions")]
    return sorted(found, key=lambda action: action.ts)


def test_sighup_reloads_the_policy_and_reversals_arrive_on_their_topic(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, partitions=2)
    config = yaml.safe_load(deployment.config_path.read_text(encoding="utf-8"))
    config["kafka"]["topics"]["reversals"] = deployment.topics["telemetry"].replace("api.usage", "reversals")
    deployment.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = tmp_path / "worker-reload.log"
    worker = deployment.start_worker("reload")
    try:
        deployment.produce_lines(burst(0, 0))
        deployment.wait_until_consumed()
        [first] = actions(deployment)
        assert first.policy_version == "default-1"

        deployment.config_path.write_text("enforcement: {ladders: {crawler: {steps: []}}}\n", encoding="utf-8")
        worker.send_signal(signal.SIGHUP)
        wait_for_log(log, "config reload refused, policy default-1 stays in force")

        deployment.config_path.write_text(yaml.safe_dump({**config, "policy_version": "v2"}), encoding="utf-8")
        worker.send_signal(signal.SIGHUP)
        wait_for_log(log, "config reloaded: policy default-1 → v2")

        lifted = ActionReversal(action=first, lifted_at=first.ts + timedelta(minutes=5), author="jdoe", reason="test")
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        reversals_topic = config["kafka"]["topics"]["reversals"]
        producer.send(reversals_topic, key=b"acct-reload", value=lifted.model_dump_json().encode())
        producer.flush()
        producer.close()
        wait_for_log(log, "applied 1 reversals")

        deployment.produce_lines(burst(8, 1000))
        deployment.wait_until_consumed()
        assert stop_worker(worker) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    _, second = actions(deployment)
    assert second.policy_version == "v2"
    # The lifted action no longer counts as an offence: the second burst starts the ladder afresh.
    assert "earlier offence" not in second.reasons[0].rule and second.duration_s == first.duration_s
