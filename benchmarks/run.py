"""Warden's performance harness: each measurement against a baseline run in the same invocation.

    .venv/bin/python -m benchmarks.run [--only embedded,kafka,latency,state,rss] [--json out.json]

Prints a table (events/s, ratio to baseline, latency percentiles, memory) and writes JSON.
Nothing here is asserted by the test suite: figures go into the README's performance section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.workload import write_workload
from detectors.registry import build_detectors
from models.config import WardenConfig
from models.telemetry import TelemetryEvent
from streams.cli import replay_file
from streams.decode import decode_event
from streams.files import JsonlFileSource
from streams.records import Channel

REPO = Path(__file__).resolve().parents[1]
KAFKA_PORT = int(os.environ.get("WARDEN_BENCH_KAFKA_PORT", "49092"))
BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"


@dataclass
class Row:
    measurement: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value


def timed_rate(work: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = work()
    return count / (time.perf_counter() - started)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


# --------------------------------------------------------------------------- embedded


def bench_embedded(workdir: Path, accounts: int, hours: float) -> list[Row]:
    """`warden replay` with every detector and the policy, against decoding the same file alone."""
    events = workdir / "embedded.jsonl"
    count = write_workload(events, accounts=accounts, hours=hours)

    def decode_only() -> int:
        source = JsonlFileSource(events)
        decoded = 0
        while not source.exhausted:
            for record in source.poll(2000):
                decode_event(record.value)
                decoded += 1
        source.close()
        return decoded

    def full_replay() -> int:
        kept = (Channel.ACTIONS, Channel.FINDINGS, Channel.DEAD_LETTERS)
        outputs: dict[Channel, Path] = {channel: workdir / f"out-{channel.value}.jsonl" for channel in kept}
        summary = replay_file(WardenConfig(), events, outputs)
        return summary.records

    decode_only()  # warm the page cache and imports
    baseline = timed_rate(decode_only)
    rate = timed_rate(full_replay)
    return [Row("embedded replay, all detectors + policy, 20% prompts", rate, "events/s",
                "decode only (JsonlFileSource + TelemetryEvent)", baseline, "≥ 100,000 events/s",
                {"events": count})]


# --------------------------------------------------------------------------- kafka


def _broker(command: str) -> None:
    env = {**os.environ, "WARDEN_KAFKA_PORT": str(KAFKA_PORT), "WARDEN_KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
           "WARDEN_KAFKA_DIR": f"/tmp/warden-kafka-bench-{KAFKA_PORT}"}
    subprocess.run(["bash", str(REPO / "deploy/kafka/kafka.sh"), command], env=env, check=True)


def _kafka_config(suffix: str, partitions: int = 4) -> WardenConfig:
    return WardenConfig.model_validate({"kafka": {
        "bootstrap_servers": BOOTSTRAP, "group_id": f"bench-{suffix}", "partitions": partitions,
        "topics": {"telemetry": f"bench.usage.{suffix}", "findings": f"bench.findings.{suffix}",
                   "actions": f"bench.actions.{suffix}", "dead_letters": f"bench.dlq.{suffix}",
                   "state": f"bench.state.{suffix}"},
    }, "server": {"port": 0}})


def _produce(topic: str, lines: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=50, batch_size=1 << 20, acks=1)
    for line in lines:
        producer.send(topic, value=line, key=orjson.loads(line)["account_id"].encode())
    producer.flush()
    producer.close()


def _bare_consumer_rate(topic: str, total: int) -> float:
    """The baseline: a bare kafka-python consumer that only polls and decodes the same records."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=2000, fetch_max_bytes=52_428_800, max_partition_fetch_bytes=4_194_304)
    seen = 0
    started = None
    while seen < total:
        for records in consumer.poll(timeout_ms=500, max_records=2000).values():
            if started is None:
                started = time.perf_counter()
            for record in records:
                orjson.loads(record.value)
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return total / elapsed


def _warden_rate(config: WardenConfig, total: int) -> float:
    """One `warden run` worker, in-process, timed from its first record to its last commit."""
    from streams.worker import KafkaWorker

    worker = KafkaWorker(config, f"bench-{uuid.uuid4().hex[:6]}")
    done = 0
    started = None
    while done < total:
        result = worker.runner.step()
        if result is None:
            continue
        if started is None:
            started = time.perf_counter()
        done += result.events + result.invalid
    elapsed = time.perf_counter() - (started or time.perf_counter())
    worker.close()
    return total / elapsed


QUIX_APP = r'''
import sys, time
from datetime import datetime, timedelta
from quixstreams import Application
bootstrap, topic_name, group, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  processing_guarantee="exactly-once")

def event_time(value, headers, timestamp, timestamp_type):
    return int(datetime.fromisoformat(value["ts"].replace("Z", "+00:00")).timestamp() * 1000)

topic = app.topic(topic_name, value_deserializer="json", timestamp_extractor=event_time)
state = {"seen": 0, "start": None}

def count(value):
    if state["start"] is None:
        state["start"] = time.perf_counter()
    state["seen"] += 1
    if state["seen"] >= total:
        print("RATE", total / (time.perf_counter() - state["start"]), flush=True)
        app.stop()

sdf = app.dataframe(topic).update(count)
sdf = sdf.tumbling_window(timedelta(minutes=1)).count().final()
app.run()
'''


def _quix_rate(topic: str, total: int) -> float | None:
    """A quixstreams application doing only the per-account traffic windows, on the same topic."""
    quix_python = os.environ.get("WARDEN_BENCH_QUIX_PYTHON", sys.executable)
    probe = subprocess.run([quix_python, "-c", "import quixstreams"], capture_output=True)
    if probe.returncode != 0:
        print("quixstreams not installed for", quix_python, "- skipping that comparison", file=sys.stderr)
        return None
    script = Path(tempfile.mkdtemp()) / "quix_app.py"
    script.write_text(QUIX_APP)
    out = subprocess.run([quix_python, str(script), BOOTSTRAP, topic, f"quix-{uuid.uuid4().hex[:6]}", str(total)],
                         capture_output=True, text=True, timeout=900, cwd=script.parent)
    for line in out.stdout.splitlines():
        if line.startswith("RATE"):
            return float(line.split()[1])
    print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
    return None


def bench_kafka(workdir: Path, accounts: int, hours: float) -> list[Row]:
    from streams.kafka_io import ensure_topics

    events = workdir / "kafka.jsonl"
    total = write_workload(events, accounts=accounts, hours=hours)
    lines = events.read_bytes().splitlines()
    suffix = uuid.uuid4().hex[:6]
    config = _kafka_config(suffix)
    ensure_topics(config.kafka)
    _produce(config.kafka.topics.telemetry, lines)
    bare = _bare_consumer_rate(config.kafka.topics.telemetry, total)
    warden = _warden_rate(config, total)
    rows = [Row("kafka: one warden run worker (exactly-once)", warden, "events/s",
                "bare kafka-python consumer: poll + decode", bare, "≥ 0.7× bare consumer", {"events": total})]
    quix = _quix_rate(config.kafka.topics.telemetry, total)
    if quix is not None:
        rows.append(Row("kafka: warden vs quixstreams per-account 1-min windows", warden, "events/s",
                        "quixstreams app (windows only)", quix, "faster (> 1×)"))
    return rows


# --------------------------------------------------------------------------- latency


def bench_latency(workdir: Path, max_rate: float, seconds: float = 30.0) -> list[Row]:
    """p50/p99 from event to committed action at half the measured maximum rate.

    Events carry the wall clock as event time; 5% of them are clear minor-safety hits on fresh
    accounts, each of which yields an action at once, so every such action's latency is
    (read-committed arrival − event time).
    """
    from kafka import KafkaConsumer, KafkaProducer

    from streams.kafka_io import ensure_topics
    from streams.worker import KafkaWorker

    rate = max_rate / 2
    suffix = uuid.uuid4().hex[:6]
    config = _kafka_config(suffix)
    ensure_topics(config.kafka)
    worker = KafkaWorker(config, f"lat-{suffix}")
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            worker.runner.step()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    time.sleep(5)  # join the group
    latencies: list[float] = []
    reader = KafkaConsumer(config.kafka.topics.actions, bootstrap_servers=BOOTSTRAP, isolation_level="read_committed",
                           auto_offset_reset="latest", group_id=f"lat-reader-{suffix}")
    reader.poll(timeout_ms=2000)

    def read() -> None:
        while not stop.is_set():
            for records in reader.poll(timeout_ms=200).values():
                arrived = time.time()
                for record in records:
                    action = orjson.loads(record.value)
                    sent = datetime.fromisoformat(action["ts"].replace("Z", "+00:00")).timestamp()
                    latencies.append(arrived - sent)

    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks=1)
    started = time.perf_counter()
    sent = 0
    while time.perf_counter() - started < seconds:
        due = int((time.perf_counter() - started) * rate)
        while sent < due:
            account = f"lat-{sent}"
            event = {"event_id": f"lat-{suffix}-{sent}", "ts": int(time.time() * 1000), "account_id": account,
                     "api_key_id": f"k-{sent % 997}", "ip": f"10.{sent % 200}.{sent % 250}.1",
                     "endpoint": "/v1/videos/text2video", "method": "POST", "status": 200, "credits": 5,
                     "user_agent": "warden-sdk-python/1.4.2",
                     "prompt": "nude image of a child" if sent % 20 == 0 else ("a red fox" if sent % 5 == 0 else None)}
            producer.send(config.kafka.topics.telemetry, value=orjson.dumps(event), key=account.encode())
            sent += 1
        time.sleep(0.001)
    producer.flush()
    time.sleep(3)
    stop.set()
    thread.join(10)
    reader_thread.join(10)
    worker.close()
    reader.close()
    if not latencies:
        return [Row("latency event → action", float("nan"), "ms", target="p99 ≤ 250 ms")]
    quantiles = statistics.quantiles(latencies, n=100)
    return [Row("latency event → committed action, p99", quantiles[98] * 1000, "ms", target="≤ 250 ms",
                extra={"rate_events_s": rate, "p50_ms": quantiles[49] * 1000, "actions": len(latencies)})]


# --------------------------------------------------------------------------- memory


def _subject_events(count: int, start: int = 0, rounds: int = 1) -> list[TelemetryEvent]:
    """``rounds`` events for each of ``count`` distinct accounts, keys and IPs, 20 s apart per subject."""
    return [TelemetryEvent.model_validate({
        "event_id": f"m-{index}-{turn}", "ts": 1767571200000 + turn * 20_000 + index, "account_id": f"acct-{index}",
        "api_key_id": f"key-{index}", "ip": f"{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}.9",
        "endpoint": "/v1/videos/{id}", "method": "GET", "status": 200, "credits": 0,
        "user_agent": "python-requests/2.32.3", "resource_id": f"vid_{index}",
        "prompt": "sexy teen" if index % 5 == 0 else None,
    }) for turn in range(rounds) for index in range(start, start + count)]


def bench_state(subjects: int = 5_000, rounds: int = 60) -> list[Row]:
    """Bytes of detector state per active subject (tracemalloc), each subject with 20 minutes of calls."""
    config = WardenConfig()
    events = _subject_events(subjects, rounds=rounds)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    detectors = build_detectors(config)
    for event in events:
        for detector in detectors:
            detector.observe(event)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    held = sum(detector.subject_count() for detector in detectors)
    snapshot_bytes = sum(len(orjson.dumps(detector.snapshot())) for detector in detectors)
    return [Row("state per active subject (in memory)", grown / held, "bytes", target="≤ 1,024 bytes",
                extra={"subjects_held": held, "json_bytes_per_subject": snapshot_bytes / held})]


def bench_rss(total: int = 1_000_000, cap: int = 100_000) -> list[Row]:
    """RSS while 1M distinct keys, accounts and IPs arrive, with ``max_subjects`` as the cap."""
    config = WardenConfig.model_validate({"state": {"max_subjects": cap}})
    detectors = build_detectors(config)
    baseline = current_rss_mb()
    peak = baseline
    chunk = 50_000
    for start in range(0, total, chunk):
        for event in _subject_events(chunk, start):
            for detector in detectors:
                detector.observe(event)
        peak = max(peak, current_rss_mb())
    held = max(store_count for store_count in (detector.subject_count() for detector in detectors))
    budget = baseline + len(detectors) * cap * 1024 / 1024 / 1024
    return [Row("RSS while 1M distinct subjects arrive", peak, "MiB", "RSS before", baseline,
                f"under the cap: {budget:.0f} MiB (baseline + detectors × max_subjects × 1 KB)",
                {"max_subjects": cap, "largest_store": held, "within_cap": peak <= budget})]


# --------------------------------------------------------------------------- main


def render(rows: list[Row]) -> str:
    header = f"{'measurement':<58} {'value':>14} {'unit':<9} {'ratio':>7}  baseline / target"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        detail = " / ".join(part for part in (
            f"{row.baseline} = {row.baseline_value:,.0f}" if row.baseline_value else row.baseline, row.target
        ) if part)
        lines.append(f"{row.measurement:<58} {row.value:>14,.1f} {row.unit:<9} {ratio:>7}  {detail}")
        for key, value in row.extra.items():
            lines.append(f"{'':<4}{key}: {value:,.1f}" if isinstance(value, float) else f"{'':<4}{key}: {value}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="embedded,kafka,latency,state,rss")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--json", default="benchmarks/results.json")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as scratch:
        workdir = Path(scratch)
        if "embedded" in wanted:
            rows += bench_embedded(workdir, args.accounts, args.hours)
        if wanted & {"kafka", "latency"}:
            _broker("start")
            try:
                if "kafka" in wanted:
                    rows += bench_kafka(workdir, args.accounts, args.hours)
                if "latency" in wanted:
                    kafka_rows = [row for row in rows if row.measurement.startswith("kafka: one")]
                    max_rate = kafka_rows[0].value if kafka_rows else 20_000.0
                    rows += bench_latency(workdir, max_rate)
            finally:
                _broker("stop")
        if "state" in wanted:
            rows += bench_state()
        if "rss" in wanted:
            rows += bench_rss()
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; {datetime.now(UTC):%Y-%m-%d}")
    print(render(rows))
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": [
        {**asdict(row), "ratio": row.ratio} for row in rows]}, indent=2))


if __name__ == "__main__":
    main()
