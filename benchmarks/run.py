"""Warden's performance harness: each measurement against a baseline run in the same invocation.

    .venv/bin/python -m benchmarks.run [--only embedded,kafka,latency,state,rss] [--json out.json] [--no-pin]

Prints a table (events/s, ratio to baseline, latency percentiles, memory) and writes JSON. The measured side
runs on one core, the broker and the load generator on the others, unless ``--no-pin``.
Nothing here is asserted by the test suite: figures go into the README's performance section.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from benchmarks.workload import write_workload
from detectors import native
from detectors.registry import build_detectors
from models.config import KafkaConfig, WardenConfig
from models.telemetry import TelemetryEvent
from streams.cli import replay_file
from streams.decode import decode_event
from streams.files import JsonlFileSource
from streams.records import Channel, SourceRecord
from streams.runner import set_gc_threshold
from streams.simulator import _SETTINGS, _STYLES, _SUBJECTS, MINOR_SAFETY_TEST_PROMPTS

if TYPE_CHECKING:
    from streams.worker import KafkaWorker

REPO = Path(__file__).resolve().parents[1]
KAFKA_PORT = int(os.environ.get("WARDEN_BENCH_KAFKA_PORT", "29092"))
"""The harness's own broker listens here and on the next port (its controller). Below Linux's ephemeral range
(32768-60999): at 49092, a client still retrying the stopped broker of the last run could connect to itself
from source port 49092, and the TIME_WAIT it left stopped the next broker from binding for a minute."""
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


def best_rate(work: Callable[[], int], repeats: int) -> float:
    """The best of ``repeats`` runs: on a shared machine, the least disturbed run is the truest figure."""
    return max(timed_rate(work) for _ in range(repeats))


def bench_embedded(workdir: Path, accounts: int, hours: float, repeats: int = 3) -> list[Row]:
    """`warden replay` with every detector and the policy, against decoding the same file alone; then the same
    replay with every prompt distinct, so that the minor-safety score cache never hits."""
    events, distinct = workdir / "embedded.jsonl", workdir / "embedded-distinct.jsonl"
    count = write_workload(events, accounts=accounts, hours=hours)
    write_workload(distinct, accounts=accounts, hours=hours, distinct_prompts=True)

    def decode_only() -> int:
        source = JsonlFileSource(events)
        decoded = 0
        while not source.exhausted:
            for record in source.poll(2000):
                decode_event(record.value)
                decoded += 1
        source.close()
        return decoded

    def full_replay(path: Path) -> Callable[[], int]:
        kept = (Channel.ACTIONS, Channel.FINDINGS, Channel.DEAD_LETTERS)
        outputs: dict[Channel, Path] = {channel: workdir / f"out-{channel.value}.jsonl" for channel in kept}
        return lambda: replay_file(WardenConfig(), path, outputs).records

    baseline = best_rate(decode_only, repeats)
    rate = best_rate(full_replay(events), repeats)
    distinct_rate = best_rate(full_replay(distinct), repeats)
    return [
        Row("embedded replay, all detectors + policy, 20% prompts", rate, "events/s",
            "decode only (JsonlFileSource + TelemetryEvent)", baseline, "≥ 100,000 events/s", {"events": count}),
        Row("embedded replay, every prompt distinct (no score-cache hits)", distinct_rate, "events/s",
            "decode only (JsonlFileSource + TelemetryEvent)", baseline, "≥ 100,000 events/s"),
    ]


# --------------------------------------------------------------------------- kafka


BROKER_DIR = Path(f"/tmp/warden-kafka-bench-{KAFKA_PORT}")


def _broker(command: str) -> None:
    """The harness's own broker. ``start`` starts it on an empty state dir and ``stop`` deletes that dir: every run
    makes topics of its own, and a broker that kept them all (3,600 partitions, 24 GB after some days of runs)
    did its background work on them during measurements, and then took longer to start than kafka.sh waits."""
    env = {**os.environ, "WARDEN_KAFKA_PORT": str(KAFKA_PORT), "WARDEN_KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
           "WARDEN_KAFKA_DIR": str(BROKER_DIR)}
    script = ["bash", str(REPO / "deploy/kafka/kafka.sh")]
    subprocess.run([*script, "wipe"], env=env, check=True)  # stops it too
    if command == "start":
        subprocess.run([*script, "start"], env=env, check=True)
        if PINNED is not None:
            _pin_process(int((BROKER_DIR / "kafka.pid").read_text()), PINNED.others)


@dataclass(frozen=True)
class Pinning:
    """The issue's targets are for one core of a 2-core machine: the measured side (Warden's worker, the bare
    consumer, the quixstreams app) runs on ``measured``, the broker and the load generator on ``others``, so
    that they do not take the measured side's core from it (unpinned, they did: the worker's p99 varied
    twice as much from run to run)."""

    measured: frozenset[int]
    others: frozenset[int]


PINNED: Pinning | None = None
"""Set by ``main`` unless ``--no-pin`` or a single core."""


def _pin_process(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus`` (``sched_setaffinity`` moves one thread; a JVM has many)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


KAFKA_OPTIONS: dict[str, Any] = {}
"""``kafka`` config settings for every worker the harness starts (``--kafka name=value``), for A/B runs."""


def _kafka_config(suffix: str, partitions: int = 4, telemetry: str | None = None) -> WardenConfig:
    return WardenConfig.model_validate({"kafka": {
        **KAFKA_OPTIONS,
        "bootstrap_servers": BOOTSTRAP, "group_id": f"bench-{suffix}", "partitions": partitions,
        "topics": {"telemetry": telemetry or f"bench.usage.{suffix}", "findings": f"bench.findings.{suffix}",
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


def _bare_consumer_rate(topic: str, total: int, compiled_records: bool = False) -> float:
    """The baseline: a bare kafka-python consumer that only polls and decodes the same records, fetching as a worker
    does by default; with ``compiled_records``, it also reads the fetched records as a worker does."""
    from kafka import KafkaConsumer

    from streams.kafka_records import read_records_compiled

    fetching = KafkaConfig()
    consumer = KafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=fetching.max_poll_records, **fetching.fetch_options())
    if compiled_records:
        read_records_compiled(consumer, SourceRecord)
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


def _drain(worker: KafkaWorker, total: int) -> tuple[float, float]:
    """Turn a worker's loop until it has processed ``total`` records. Returns events/s to the commit of the last
    from the moment its source first handed records over, as the bare consumer's and the quixstreams app's clocks
    start at their first records; and the same from the start of that turn, which also holds the group join's
    end, the partitions' restore and the detectors' set-up (the rate this harness reported before)."""
    poll = worker.source.poll
    handed_over: list[float] = []

    def timed_poll(max_records: int) -> list[SourceRecord]:
        records = poll(max_records)
        if records and not handed_over:
            handed_over.append(time.perf_counter())
        return records

    worker.source.poll = timed_poll  # type: ignore[method-assign]  # this drain only: hides the method
    done = 0
    started = None
    try:
        while done < total:
            turn_started = time.perf_counter()
            result = worker.turn()
            if result is None:
                continue
            if started is None:
                started = turn_started
            done += result.events + result.invalid
    finally:
        del worker.source.poll
    ended = time.perf_counter()
    return total / (ended - handed_over[0]), total / (ended - (started or ended))


def _warden_rate(config: WardenConfig, total: int) -> tuple[float, float]:
    """One `warden run` worker, in-process, running its own loop turns: ``_drain``'s two rates."""
    from streams.worker import KafkaWorker

    worker = KafkaWorker(config, f"bench-{uuid.uuid4().hex[:6]}")
    try:
        return _drain(worker, total)
    finally:
        worker.close()


QUIX_APP = r'''
import gc, sys, time
from datetime import datetime, timedelta
from quixstreams import Application
bootstrap, topic_name, group, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
gc.set_threshold(int(sys.argv[5]), *gc.get_threshold()[1:])
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
    group, young = f"quix-{uuid.uuid4().hex[:6]}", str(gc.get_threshold()[0])
    out = subprocess.run([quix_python, str(script), BOOTSTRAP, topic, group, str(total), young],
                         capture_output=True, text=True, timeout=900, cwd=script.parent)
    for line in out.stdout.splitlines():
        if line.startswith("RATE"):
            return float(line.split()[1])
    print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
    return None


KAFKA_ROUNDS = 3
"""Rounds of the three consumers, one after another in each round; each is reported at its best round. A single
round's bare-consumer rate moved between 36k and 68k events/s from one invocation to the next."""


def bench_kafka(workdir: Path, accounts: int, hours: float) -> list[Row]:
    from streams.kafka_io import ensure_topics

    events = workdir / "kafka.jsonl"
    total = write_workload(events, accounts=accounts, hours=hours)
    lines = events.read_bytes().splitlines()
    suffix = uuid.uuid4().hex[:6]
    telemetry = _kafka_config(suffix).kafka.topics.telemetry
    bare: list[float] = []
    bare_compiled: list[float] = []
    warden: list[float] = []
    with_setup: list[float] = []
    quix: list[float] = []
    for round_number in range(KAFKA_ROUNDS):
        # Each round's worker is a new group with outputs and changelog of its own, on the same input.
        config = _kafka_config(f"{suffix}-{round_number}", telemetry=telemetry)
        ensure_topics(config.kafka)
        if round_number == 0:
            _produce(telemetry, lines)

        def run_worker(config: WardenConfig = config) -> None:
            steady, whole_turn = _warden_rate(config, total)
            warden.append(steady)
            with_setup.append(whole_turn)

        consumers: list[Callable[[], None]] = [
            lambda: bare.append(_bare_consumer_rate(telemetry, total)),
            lambda: bare_compiled.append(_bare_consumer_rate(telemetry, total, compiled_records=True)),
            run_worker,
        ]
        # Each takes the round's first turn in its own round: the first after the producer (or the last round's
        # quixstreams app) measured fastest, whichever it was.
        turn = round_number % len(consumers)
        for consume in consumers[turn:] + consumers[:turn]:
            consume()
        quix_rate = _quix_rate(telemetry, total)
        if quix_rate is not None:
            quix.append(quix_rate)
    # Each round's own ratio too: its two consumers ran seconds apart, where the best rounds may be a minute apart
    # and the bare consumer's rate moved by half from one round to the next.
    paired = [rate / baseline for rate, baseline in zip(warden, bare, strict=True)]
    rounds = {"events": total, "rounds_warden": [round(rate) for rate in warden],
              "rounds_warden_with_setup": [round(rate) for rate in with_setup],
              "rounds_bare": [round(rate) for rate in bare],
              "rounds_ratio": [round(ratio, 3) for ratio in paired],
              "median_round_ratio": round(statistics.median(paired), 3)}
    rows = [Row("kafka: one warden run worker (exactly-once), best round", max(warden), "events/s",
                "bare kafka-python consumer: poll + decode, best round", max(bare), "≥ 0.7× bare consumer", rounds),
            Row("kafka: the same worker, against a bare consumer reading records as it does", max(warden), "events/s",
                "bare consumer with Warden's compiled record reader, best round", max(bare_compiled),
                "none: it shows what the pipeline adds",
                {"rounds_bare_compiled": [round(rate) for rate in bare_compiled]})]
    if quix:
        rows.append(Row("kafka: warden vs quixstreams per-account 1-min windows, best rounds", max(warden), "events/s",
                        "quixstreams app (windows only)", max(quix), "faster (> 1×)",
                        {"rounds_quixstreams": [round(rate) for rate in quix]}))
    return rows


# --------------------------------------------------------------------------- latency


LATENCY_POPULATIONS = (300, 10_000)
"""The steady populations measured: the throughput workload's scale, and a large one. Each account has one or
two keys and one /24 and at a few thousand events/s makes a few calls a minute (a few hundred in the small
one), so nothing in it is abuse: a replay of this workload finds only the hits. The larger the population,
the more distinct subjects a batch touches, and each one costs a state changelog record."""
LATENCY_NETWORKS = 3_000
HIT_EVERY = 100
"""One event in this many is a clear minor-safety hit on a fresh account; each yields an action at once
(a first clear hit is acted on without history), and those actions are the ones measured."""
PROMPT_SHARE = 0.2
THROUGHPUT_RATE = 4_000
"""Events per second of event time in the throughput phase, near the rate the measured phase sends at
(whose events carry the wall clock), so subjects see similar per-minute counts in both phases."""
PUBLIC_FIRST_OCTETS = (23, 31, 45, 62, 77, 81, 89, 91, 103, 109, 141, 151, 176, 185, 188, 195, 203, 212)


class LatencyWorkload:
    """The latency benchmark's events: the steady population, 20% of calls with prompts (the hits included),
    and every ``HIT_EVERY``-th event a clear minor-safety hit on an account never seen before."""

    def __init__(self, population: str, phase: str, seed: int, accounts: int) -> None:
        self.population = population
        self.accounts = accounts
        self.phase = phase
        self.rng = random.Random(seed)
        self.count = 0
        # The hits carry prompts too, so the population's share is a little lower for 20% overall.
        self.population_prompt_share = (PROMPT_SHARE * HIT_EVERY - 1) / (HIT_EVERY - 1)

    @staticmethod
    def address(network: int, host: int) -> str:
        first = PUBLIC_FIRST_OCTETS[network % len(PUBLIC_FIRST_OCTETS)]
        return f"{first}.{network // len(PUBLIC_FIRST_OCTETS) % 256}.{network * 13 % 256}.{host}"

    def is_hit(self, account_id: str) -> bool:
        return account_id.startswith(f"fresh-{self.phase}-")

    def next(self, ts_ms: int) -> tuple[bytes, bytes]:
        """(key, value) of the next event, with event time ``ts_ms``."""
        rng, index = self.rng, self.count
        self.count += 1
        event: dict[str, Any] = {"event_id": f"lat-{self.phase}-{index}", "ts": ts_ms, "status": 200,
                                 "user_agent": "warden-sdk-python/1.4.2"}
        if index % HIT_EVERY == HIT_EVERY - 1:
            account = f"fresh-{self.phase}-{index}"
            prompt = MINOR_SAFETY_TEST_PROMPTS[index // HIT_EVERY % len(MINOR_SAFETY_TEST_PROMPTS)]
            event |= {"account_id": account, "api_key_id": f"{account}-key", "method": "POST",
                      "ip": self.address(rng.randrange(LATENCY_NETWORKS), 7),
                      "endpoint": "/v1/videos/text2video", "credits": 5, "prompt": prompt}
        else:
            number = rng.randrange(self.accounts)
            account = f"acct-{self.population}-{number}"
            event |= {"account_id": account, "api_key_id": f"{account}-k{rng.randrange(1 + number % 2)}",
                      "ip": self.address(number % LATENCY_NETWORKS, 10 + rng.randrange(3))}
            if rng.random() < self.population_prompt_share:
                prompt = f"{rng.choice(_SUBJECTS)} {rng.choice(_SETTINGS)}, {rng.choice(_STYLES)}"
                event |= {"method": "POST", "endpoint": "/v1/videos/text2video", "credits": 5, "prompt": prompt,
                          "resource_id": f"vid_{index}"}
            else:
                event |= {"method": "GET", "endpoint": "/v1/videos/{id}", "credits": 0,
                          "resource_id": f"vid_{index - rng.randrange(1, 500)}"}
        return account.encode(), orjson.dumps(event)


def _send_and_read(
    topics: dict[str, str], population: str, phase: str, accounts: int, rate: float, seconds: float,
    pinned: Pinning | None, conn: Any,
) -> None:
    """A live phase, in its own process so that sending and reading do not take the worker's GIL: send at
    ``rate`` with event time = the wall clock at send, and time each hit's committed action (read_committed).
    Reports the wall-clock window it sent in, so the worker can count what it processed meanwhile."""
    from confluent_kafka import Producer
    from kafka import KafkaConsumer, TopicPartition

    if pinned is not None:
        os.sched_setaffinity(0, pinned.others)  # before the clients start their threads, which inherit it
    workload = LatencyWorkload(population, phase, seed=2, accounts=accounts)
    reader = KafkaConsumer(bootstrap_servers=BOOTSTRAP, isolation_level="read_committed", enable_auto_commit=False)
    partitions = [TopicPartition(topics["actions"], p) for p in sorted(reader.partitions_for_topic(topics["actions"]))]
    reader.assign(partitions)
    reader.seek_to_end(*partitions)
    for tp in partitions:
        reader.position(tp)
    latencies: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for records in reader.poll(timeout_ms=50).values():
                arrived = time.time()
                for record in records:
                    action = orjson.loads(record.value)
                    if workload.is_hit(action["account_id"]):
                        sent = datetime.fromisoformat(action["ts"].replace("Z", "+00:00")).timestamp()
                        latencies.append(arrived - sent)

    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5, "acks": 1})
    sending_from = time.time()
    cpu_from = time.process_time()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        due = int((time.perf_counter() - started) * rate)
        while workload.count < due:
            key, value = workload.next(int(time.time() * 1000))
            while True:
                try:
                    producer.produce(topics["telemetry"], value=value, key=key)
                    break
                except BufferError:  # its queue is full: let it deliver some first
                    producer.poll(0.001)
        producer.poll(0)
        time.sleep(0.001)
    producer.flush()
    sending_to = time.time()
    load_cpu = (time.process_time() - cpu_from) / (sending_to - sending_from)
    time.sleep(5)  # the last actions' commit
    stop.set()
    reader_thread.join(10)
    reader.close()
    conn.send({"latencies": latencies, "hits": workload.count // HIT_EVERY,
               "events": workload.count, "sending_from": sending_from, "sending_to": sending_to,
               "load_cpu_share": load_cpu})


def _live(worker: KafkaWorker, topics: dict[str, str], population: str, phase: str, accounts: int, rate: float,
          seconds: float) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """Run a live phase in another process while the worker turns; returns that process's report and, per
    worker batch, (wall clock at its commit, records in it)."""
    spawn = multiprocessing.get_context("spawn")  # not fork: the worker's client threads must stay here
    receiving, sending = spawn.Pipe(duplex=False)
    load = spawn.Process(
        target=_send_and_read, args=(topics, population, phase, accounts, rate, seconds, PINNED, sending),
        daemon=True)
    load.start()
    batches: list[tuple[float, int]] = []
    cpu: list[tuple[float, float]] = []  # (wall clock, this process's CPU seconds) after each turn
    while load.is_alive() and not receiving.poll():
        result = worker.turn()
        cpu.append((time.time(), time.process_time()))
        if result is not None:
            batches.append((time.time(), result.events + result.invalid))
    if not receiving.poll():
        raise RuntimeError(f"the load process exited with {load.exitcode} before reporting")
    report: dict[str, Any] = receiving.recv()
    during = [sample for sample in cpu if report["sending_from"] <= sample[0] <= report["sending_to"]]
    report["worker_cpu_share"] = (
        (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0]) if len(during) > 1 else float("nan"))
    load.join(10)
    while worker.turn() is not None:  # whatever is left, so the next phase starts caught up
        pass
    return report, batches


LIVE_MAX_SECONDS = 20.0
LIVE_MAX_OVERLOAD = 1.3
"""The live maximum phase offers this times the rate the worker drained a backlog at, so that it falls behind:
offered just that rate, a worker alone on its core kept up, and the maximum was only what was offered."""
LIVE_MAX_SKIP_S = 3.0
"""The live maximum counts the worker's batches committed from this long after sending started (its backlog
builds up first) to the end of sending."""


def _live_max(report: dict[str, Any], batches: list[tuple[float, int]]) -> tuple[float, bool]:
    """Events/s the worker committed while the sender offered more than it could take, and whether it really
    fell behind (if not, the figure is only what was offered: the worker's maximum is at least that)."""
    start, end = report["sending_from"] + LIVE_MAX_SKIP_S, report["sending_to"]
    inside = [(at, count) for at, count in batches if start <= at <= end]
    if len(inside) < 2:
        raise RuntimeError("the live maximum phase saw fewer than two batches")
    committed = sum(count for _, count in inside[1:])
    rate = committed / (inside[-1][0] - inside[0][0])
    processed_by_end = sum(count for at, count in batches if at <= end)
    return rate, processed_by_end < 0.95 * report["events"]


def bench_latency(accounts: int, seconds: float = 30.0, throughput_events: int = 60_000) -> list[Row]:
    """p50/p99 from event to committed action at half the maximum rate of the same workload on the same worker.

    The maximum is measured live, under the conditions of the latency phase: another process sends the
    workload with the wall clock as event time (and reads the actions) while the worker runs, offering more
    than the worker can take, and the maximum is what the worker commits per second once behind. (The rate
    with events produced ahead, no sender running, is measured first and reported for reference; the live
    maximum phase offers 1.3 times it.) After a catch-up, the sender sends at half the live
    maximum, and the latency of each fresh account's hit is its action's arrival (read_committed) minus the
    hit's send time. The sender produces with librdkafka (confluent-kafka): with kafka-python's producer it
    cost ~40 µs an event, and pinned to the broker's core it could not offer more than the worker took.
    """
    from streams.kafka_io import ensure_topics
    from streams.worker import KafkaWorker

    suffix = uuid.uuid4().hex[:6]
    config = _kafka_config(suffix)
    ensure_topics(config.kafka)
    workload = LatencyWorkload(suffix, "throughput", seed=1, accounts=accounts)
    warmup = 2 * accounts
    first_ms = int(time.time() * 1000) - (warmup + throughput_events) * 1000 // THROUGHPUT_RATE

    def produce(count: int) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=50, batch_size=1 << 20, acks=1)
        for _ in range(count):
            key, value = workload.next(first_ms + workload.count * 1000 // THROUGHPUT_RATE)
            producer.send(config.kafka.topics.telemetry, value=value, key=key)
        producer.flush()
        producer.close()

    topics = {"telemetry": config.kafka.topics.telemetry, "actions": config.kafka.topics.actions}
    worker = KafkaWorker(config, f"lat-{suffix}")
    try:
        produce(warmup)
        _drain(worker, warmup)
        produce(throughput_events)
        ahead_rate, _ = _drain(worker, throughput_events)
        offer = LIVE_MAX_OVERLOAD * ahead_rate
        report, batches = _live(worker, topics, suffix, "livemax", accounts, offer, LIVE_MAX_SECONDS)
        max_rate, behind = _live_max(report, batches)
        rate = max_rate / 2
        measured, _ = _live(worker, topics, suffix, "measured", accounts, rate, seconds)
    finally:
        worker.close()
    latencies = measured["latencies"]
    offered = report["events"] / (report["sending_to"] - report["sending_from"])
    extra = {"accounts": accounts, "max_rate_events_s": max_rate, "max_rate_fell_behind": behind,
             "offered_in_max_phase_events_s": offered, "max_rate_produced_ahead_events_s": ahead_rate,
             "rate_events_s": rate, "events_sent": measured["events"], "hits_sent": measured["hits"],
             "actions_timed": len(latencies),
             "cpu_share_max_phase_worker_load": f"{report['worker_cpu_share']:.2f} / {report['load_cpu_share']:.2f}",
             "cpu_share_latency_phase_worker_load":
                 f"{measured['worker_cpu_share']:.2f} / {measured['load_cpu_share']:.2f}"}
    if len(latencies) < 2:
        return [Row(f"latency event → committed action, p99, {accounts:,} accounts", float("nan"), "ms",
                    target="≤ 250 ms", extra=extra)]
    quantiles = statistics.quantiles(latencies, n=100)
    return [Row(f"latency event → committed action, p99, {accounts:,} accounts", quantiles[98] * 1000, "ms",
                target="≤ 250 ms",
                extra={**extra, "p50_ms": quantiles[49] * 1000, "p90_ms": quantiles[89] * 1000,
                       "max_ms": max(latencies) * 1000})]


# --------------------------------------------------------------------------- memory


def _subject_events(count: int, start: int = 0, rounds: int = 1) -> Iterator[TelemetryEvent]:
    """``rounds`` events for each of ``count`` distinct accounts, keys and IPs, 20 s apart per subject; made
    one at a time, as a stream delivers them, so no list of events (or their cached fields) is measured."""
    for turn in range(rounds):
        for index in range(start, start + count):
            yield TelemetryEvent.model_validate({
                "event_id": f"m-{index}-{turn}", "ts": 1767571200000 + turn * 20_000 + index,
                "account_id": f"acct-{index}", "api_key_id": f"key-{index}",
                "ip": f"{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}.9",
                "endpoint": "/v1/videos/{id}", "method": "GET", "status": 200, "credits": 0,
                "user_agent": "python-requests/2.32.3", "resource_id": f"vid_{index}",
                "prompt": "sexy teen" if index % 5 == 0 else None,
            })


def bench_state(subjects: int = 5_000, rounds: int = 60) -> list[Row]:
    """Bytes of detector state per active subject, each subject with 20 minutes of calls: what Python's allocator
    holds (tracemalloc) plus what the compiled module holds on its own heap. The detectors are built (modules
    imported, the prompt model loaded) before the first snapshot: only what the subjects add is counted."""
    detectors = build_detectors(WardenConfig())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    native_before = native.allocated_bytes()
    for event in _subject_events(subjects, rounds=rounds):
        for detector in detectors:
            detector.observe(event)
    del event
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    native_grown = native.allocated_bytes() - native_before
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename")) + native_grown
    held = sum(detector.subject_count() for detector in detectors)
    snapshot_bytes = sum(len(orjson.dumps(detector.snapshot())) for detector in detectors)
    return [Row("state per active subject (in memory)", grown / held, "bytes", target="≤ 1,024 bytes",
                extra={"subjects_held": held, "per_account": grown / subjects, "native_bytes": native_grown,
                       "json_bytes_per_subject": snapshot_bytes / held})]


def bench_rss(total: int = 1_000_000, cap: int = 100_000) -> list[Row]:
    """RSS while 1M distinct keys, accounts and IPs arrive, with ``max_subjects`` as the cap of every store."""
    config = WardenConfig.model_validate({"state": {"max_subjects": cap}})
    detectors = build_detectors(config)
    baseline = current_rss_mb()
    peak = baseline
    chunk = 50_000
    by_arrivals: dict[str, float] = {}
    for start in range(0, total, chunk):
        for event in _subject_events(chunk, start):
            for detector in detectors:
                detector.observe(event)
        peak = max(peak, current_rss_mb())
        if (start + chunk) % 250_000 == 0:
            by_arrivals[f"{start + chunk:,}"] = round(current_rss_mb())
    stores = sum(len(detector.stores()) for detector in detectors)
    held = sum(detector.subject_count() for detector in detectors)
    budget = baseline + stores * cap * 1024 / 1024 / 1024
    return [Row("RSS while 1M distinct subjects arrive", peak, "MiB", "RSS before", baseline,
                f"under the cap: {budget:.0f} MiB (baseline + stores × max_subjects × 1 KB)",
                {"max_subjects": cap, "stores": stores, "subjects_held": held, "rss_mib_after": by_arrivals,
                 "within_cap": peak <= budget})]


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
    parser.add_argument("--no-pin", action="store_true",
                        help="leave processes where the OS puts them (default: the measured side on core 0, the "
                        "broker and the load on the others)")
    parser.add_argument("--kafka", action="append", default=[], metavar="NAME=VALUE",
                        help="a kafka config setting for the workers, e.g. checkpoint_interval_ms=0; repeatable")
    args = parser.parse_args()
    for option in args.kafka:
        name, _, value = option.partition("=")
        KAFKA_OPTIONS[name] = yaml.safe_load(value)
    wanted = set(args.only.split(","))
    # Every Python side runs under Warden's collector setting: the baselines in this process, and the
    # quixstreams app too (QUIX_APP), so no side is measured with more collection work than another.
    set_gc_threshold(WardenConfig().pipeline.gc_young_threshold)
    cores = os.sched_getaffinity(0)
    if not args.no_pin and len(cores) > 1:
        global PINNED
        measured = min(cores)
        PINNED = Pinning(frozenset({measured}), frozenset(cores - {measured}))
        os.sched_setaffinity(0, PINNED.measured)  # this process runs the measured side; its children inherit it
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
                    for accounts in LATENCY_POPULATIONS:
                        rows += bench_latency(accounts)
            finally:
                _broker("stop")
        if "state" in wanted:
            rows += bench_state()
        if "rss" in wanted:
            rows += bench_rss()
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if PINNED is not None:
        machine += f"; measured side on cores {sorted(PINNED.measured)}, broker and load on {sorted(PINNED.others)}"
    print(f"machine: {machine}; {datetime.now(UTC):%Y-%m-%d}")
    print(render(rows))
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": [
        {**asdict(row), "ratio": row.ratio} for row in rows]}, indent=2))


if __name__ == "__main__":
    main()
