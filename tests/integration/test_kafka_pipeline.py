"""``warden run`` on a real broker: equals replay, dead letters, crashes, broker restart, failover."""

from __future__ import annotations

import random
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError

from models.config import load_config
from streams.kafka_io import KafkaSink, KafkaSource
from streams.records import Channel, OutputRecord
from streams.worker import KafkaWorker
from tests.integration.kafka_support import BOOTSTRAP, RESTORE_LINE, Deployment, broker, sorted_values, stop_worker

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("kafka_broker")]

Telemetry = tuple[Path, list[bytes], list[bytes]]


def kill_mid_stream(deployment: Deployment, worker: subprocess.Popen[bytes], done: int, chance: random.Random) -> int:
    """Wait until the worker commits past ``done``, let it run a random moment longer, kill -9 it;
    returns the committed progress at the kill. Waiting for progress first keeps the kills landing
    mid-stream however slow the machine is."""
    deadline = time.monotonic() + 180
    total = sum(deployment.input_end_offsets().values())
    while done < total and sum(deployment.committed_offsets().values()) <= done:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited by itself with {worker.returncode}")
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.2)
    time.sleep(chance.uniform(0.0, 0.6))
    worker.kill()
    worker.wait()
    return sum(deployment.committed_offsets().values())


def test_run_gives_the_same_actions_and_findings_as_replay(telemetry: Telemetry, tmp_path: Path) -> None:
    events, actions, findings = telemetry
    deployment = Deployment(tmp_path)
    worker = deployment.start_worker("e2e")
    deployment.produce_lines(events.read_bytes().splitlines())
    deployment.wait_until_consumed()
    port = int(re.findall(rb"/healthz on port (\d+)", (tmp_path / "worker-e2e.log").read_bytes())[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as health:
        assert health.status == 200 and health.read().startswith(b"ok")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as scrape:
        exposition = scrape.read().decode()
    consumed = re.search(r'^warden_events_consumed_total\{outcome="ok"\} (\S+)$', exposition, re.MULTILINE)
    assert consumed and float(consumed.group(1)) == len(events.read_bytes().splitlines())
    assert stop_worker(worker) == 0, "SIGTERM must close the worker cleanly"
    assert sorted_values(deployment.read_committed("actions")) == actions
    assert sorted_values(deployment.read_committed("findings")) == findings
    keys = {key for key, value, _ in deployment.read_committed("actions")}
    assert all(key and key.startswith(b"acct-") for key in keys), "actions are keyed by account_id"


def test_malformed_records_land_in_the_dlq_with_reasons_and_nothing_else_is_lost(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    events, actions, _ = telemetry
    lines = events.read_bytes().splitlines()
    junk = [b'{"event_id": "x", "ts": "2026-01-05T00:00:00Z"', b"\xff\xfe\x00binary", b'{"event_id": "y"}',
            b'{"event_id":"z","ts":"2026-01-05T01:00:00Z","account_id":"a","api_key_id":"k","ip":"1.1.1.1",'
            b'"endpoint":"/v1/x","method":"GET","status":"bad","credits":0}']
    mixed = lines[:1000] + junk[:2] + lines[1000:5000] + junk[2:] + lines[5000:]
    deployment = Deployment(tmp_path)
    worker = deployment.start_worker("dlq")
    deployment.produce_lines(mixed)
    deployment.wait_until_consumed()
    stop_worker(worker)
    letters = deployment.read_committed("dead_letters")
    assert sorted(value for _, value, _ in letters) == sorted(junk)
    for _, _, headers in letters:
        assert headers["reason"] and headers["partition"].isdigit() and headers["offset"].isdigit()
    reasons = b" ".join(headers["reason"] for _, _, headers in letters)
    assert b"status" in reasons and b"Field required" in reasons and b"Invalid JSON" in reasons
    assert sorted_values(deployment.read_committed("actions")) == actions


def test_kill_9_at_random_points_loses_and_duplicates_nothing(telemetry: Telemetry, tmp_path: Path) -> None:
    events, actions, findings = telemetry
    # Checkpoints of at most 20 records a batch: most kills land while one is half written.
    deployment = Deployment(tmp_path, batch_size=200, extra={"checkpoint_records_per_batch": 20})
    deployment.produce_lines(events.read_bytes().splitlines())
    total = sum(deployment.input_end_offsets().values())
    chance = random.Random(2026)
    progress = [0]
    for _ in range(10):
        worker = deployment.start_worker("crashy")
        progress.append(kill_mid_stream(deployment, worker, progress[-1], chance))
    mid_stream = [done for done in progress[1:] if 0 < done < total]
    assert len(set(mid_stream)) >= 3, f"too few kills landed mid-stream: {progress} of {total}"
    worker = deployment.start_worker("crashy")
    deployment.wait_until_consumed(timeout_s=300)
    stop_worker(worker)
    got = sorted_values(deployment.read_committed("actions"))
    assert len(got) == len(set(got)), "duplicate actions after crashes"
    assert got == actions
    assert sorted_values(deployment.read_committed("findings")) == findings
    # State is checkpointed every second, not every batch: some restarts must have rebuilt it by processing
    # the input since their partition's checkpoint again (silently, or the comparisons above would fail).
    restores = RESTORE_LINE.findall((tmp_path / "worker-crashy.log").read_bytes())
    assert any(int(replayed) > 0 for _, replayed in restores), "no restore replayed input: checkpoints went untested"


def test_a_clean_stop_leaves_nothing_to_replay(telemetry: Telemetry, tmp_path: Path) -> None:
    events, _, _ = telemetry
    deployment = Deployment(tmp_path, batch_size=200)
    deployment.produce_lines(events.read_bytes().splitlines()[:5000])
    worker = deployment.start_worker("clean")
    deployment.wait_until_consumed()
    assert stop_worker(worker) == 0
    # The first start may have joined twice (a second join soon after the first happens), restoring each time.
    first = deployment.wait_for_restores("clean", 4)
    worker = deployment.start_worker("clean")
    second = deployment.wait_for_restores("clean", len(first) + 4)[len(first) : len(first) + 4]
    stop_worker(worker)
    assert {replayed for _, replayed in first} == {0}, "the first start had no committed input"
    assert sum(restored for restored, _ in second) > 0, "the restart must restore the state it checkpointed"
    assert [replayed for _, replayed in second] == [0, 0, 0, 0], "a clean stop checkpoints everything"


def test_broker_restart_mid_stream_loses_nothing(telemetry: Telemetry, tmp_path: Path) -> None:
    events, actions, _ = telemetry
    deployment = Deployment(tmp_path, batch_size=200)
    deployment.produce_lines(events.read_bytes().splitlines())
    worker = deployment.start_worker("steady")
    time.sleep(4)
    broker("stop")
    time.sleep(3)
    broker("start")
    deployment.wait_until_consumed(timeout_s=300)
    assert worker.poll() is None, "the worker must ride out a broker restart"
    stop_worker(worker)
    assert sorted_values(deployment.read_committed("actions")) == actions


def test_failover_to_a_second_worker_restores_state(telemetry: Telemetry, tmp_path: Path) -> None:
    events, actions, findings = telemetry
    lines = events.read_bytes().splitlines()
    deployment = Deployment(tmp_path, batch_size=200)
    # One after the other: two kafka-python consumers joining a new group at the same moment sometimes left the
    # group's leader hung after its SyncGroup (seen 2 in ~8 runs, with no partitions split to fail over).
    first = deployment.start_worker("one")
    deployment.wait_for_restores("one", 4)
    second = deployment.start_worker("two")
    deployment.wait_for_restores("two", 1)  # the rebalance split the partitions
    deployment.produce_lines(lines[: len(lines) // 2])
    time.sleep(3)
    first.kill()
    first.wait()
    deployment.produce_lines(lines[len(lines) // 2 :])
    deployment.wait_until_consumed(timeout_s=300)
    stop_worker(second)
    restored = RESTORE_LINE.findall((tmp_path / "worker-two.log").read_bytes())
    assert any(int(count) > 0 for count, _ in restored), "the survivor must restore the dead worker's partition state"
    got = sorted_values(deployment.read_committed("actions"))
    assert len(got) == len(set(got))
    assert got == actions
    assert sorted_values(deployment.read_committed("findings")) == findings


def test_without_transactions_delivery_is_at_least_once_with_deterministic_ids(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    events, actions, _ = telemetry
    deployment = Deployment(tmp_path, batch_size=300, extra={"transactions": False})
    deployment.produce_lines(events.read_bytes().splitlines())
    chance = random.Random(7)
    done = 0
    for _ in range(3):
        done = kill_mid_stream(deployment, deployment.start_worker("plain"), done, chance)
    worker = deployment.start_worker("plain")
    deployment.wait_until_consumed(timeout_s=300)
    stop_worker(worker)
    got = sorted_values(deployment.read_committed("actions"))
    assert sorted(set(got)) == actions, "deduped by their deterministic ids, the actions equal replay's"


def test_a_commit_completes_in_the_background_and_a_failed_one_is_raised_in_the_next_batch(tmp_path: Path) -> None:
    """``KafkaSink.commit`` returns before its transaction completes; the next batch's transaction opens after it.
    A producer fenced meanwhile fails the batch in flight: the failure is raised, and only the batch that
    completed is visible to a read_committed consumer."""
    deployment = Deployment(tmp_path)
    kafka = load_config(deployment.config_path).kafka
    source = KafkaSource(kafka, "async")
    sink = KafkaSink(kafka, source, "async")
    try:
        sink.begin(source, {})
        sink.add(OutputRecord(Channel.FINDINGS, b"k", b"first"))
        sink.commit()
        sink.begin(source, {})  # waits for nothing: the first commit may still be in flight
        sink.add(OutputRecord(Channel.FINDINGS, b"k", b"second"))  # opens the second transaction after the first
        fencer = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{kafka.transactional_id_prefix}-async")
        fencer.init_transactions()  # a successor with the same id: aborts the open transaction, fences ours
        fencer.close()
        with pytest.raises(KafkaError):
            sink.commit()
            sink.settle()
    finally:
        sink.close()
        source.close()
    assert sorted_values(deployment.read_committed("findings")) == [b"first"]


def test_an_aborted_batch_is_rewound_and_its_outputs_committed_once(telemetry: Telemetry, tmp_path: Path) -> None:
    """Two batches fail at their commit (as when the broker refuses it): each is aborted, the worker rewinds every
    partition to what was committed (its state from the changelog, its input from where that state is) and goes
    on. The committed actions and findings are replay's, none twice."""
    events, actions, findings = telemetry
    deployment = Deployment(tmp_path)
    deployment.produce_lines(events.read_bytes().splitlines())
    target = deployment.input_end_offsets()
    worker = KafkaWorker(load_config(deployment.config_path), "rewind")
    commit, commits, failing = worker.sink.commit, [0], {6, 15}

    def commit_unless_refused() -> None:
        commits[0] += 1
        if commits[0] in failing:
            raise KafkaError(f"commit {commits[0]} refused (injected)")
        commit()

    recover, recoveries = worker.recover, [0]

    def counted_recover() -> None:
        recoveries[0] += 1
        recover()

    worker.sink.commit = commit_unless_refused  # type: ignore[method-assign]
    worker.recover = counted_recover  # type: ignore[method-assign]
    deadline = time.monotonic() + 180
    try:
        while deployment.committed_offsets() != target:
            assert time.monotonic() < deadline, f"committed {deployment.committed_offsets()} of {target}"
            for _ in range(20):
                worker.turn()
        worker.stop_cleanly()
    finally:
        worker.close()
    assert commits[0] > max(failing) and recoveries[0] == len(failing)
    assert sorted_values(deployment.read_committed("actions")) == actions
    assert sorted_values(deployment.read_committed("findings")) == findings
