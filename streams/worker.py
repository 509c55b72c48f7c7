"""``warden run``: one consumer-group member running the pipeline on Kafka, exactly once.

Each batch is one transaction holding its findings, actions, dead letters, state changes and
consumed offsets. A partition's state is rebuilt from the compacted changelog when the partition
is assigned; a failed batch is aborted, the worker rewinds to the committed offsets and restores
the state of its partitions, so nothing is lost and nothing is emitted twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from kafka.errors import KafkaError, ProducerFencedError

from models.action import ActionReversal
from models.config import WardenConfig
from streams import metrics
from streams.health import serve
from streams.kafka_io import ChangelogReader, KafkaSink, KafkaSource, ensure_topics
from streams.pipeline import BatchResult
from streams.reload import reload_config
from streams.reversals import ReversalFeed
from streams.runner import Runner

log = logging.getLogger(__name__)

REVERSAL_POLL_INTERVAL_S = 0.1
"""How often the reversal poller looks for lifted actions (people write them; a tenth of a second is prompt)."""


class ReversalPoller:
    """Reads the reversals topic on its own thread; the loop takes what arrived between batches.

    Not on the loop's thread because kafka-python's ``poll(timeout_ms=0)`` on a consumer with a fetch in
    flight raises and catches a timeout internally, and that exception's traceback holds every frame on
    the stack: the loop turn's frame then kept its whole batch (outputs, findings, actions) alive until
    a full garbage collection, which made full collections frequent (measured: 300 ms each over a
    10,000-account state, every ~3,000 events) and grew memory between them.
    """

    def __init__(self, feed: ReversalFeed, interval_s: float = REVERSAL_POLL_INTERVAL_S) -> None:
        self.feed = feed
        self.interval_s = interval_s
        self._arrived: list[ActionReversal] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warden-reversals", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                reversals = self.feed.poll()
            except KafkaError as error:
                log.warning("reading reversals failed (%s); retrying", error)
                continue
            if reversals:
                with self._lock:
                    self._arrived.extend(reversals)

    def take(self) -> list[ActionReversal]:
        """The reversals that arrived since the last call, in arrival order."""
        with self._lock:
            arrived, self._arrived = self._arrived, []
        return arrived

    def close(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self.feed.close()


class KafkaWorker:
    def __init__(self, config: WardenConfig, instance_id: str, config_path: str | None = None) -> None:
        self.config = config
        self.instance_id = instance_id
        self.config_path = config_path
        self.reload_requested = threading.Event()
        self.stopping = threading.Event()
        self.last_turn = time.monotonic()
        kafka = config.kafka
        ensure_topics(kafka)
        self.source = KafkaSource(kafka, instance_id)
        # The sink's init_transactions comes before the first poll: it fences a crashed predecessor
        # with the same instance id and aborts its open batch before we read anything.
        self.sink = KafkaSink(kafka, self.source, instance_id)
        self.runner = Runner(config, self.source, self.sink, wall_clock=time.time)
        self.changelog = ChangelogReader(kafka)
        self.reversals = ReversalPoller(ReversalFeed(kafka))
        self.source.assign_hooks.append(self.restore_partition)
        self.source.revoke_hooks.append(self.drop_partition)
        self.source.subscribe()
        self.reversals.start()

    def restore_partition(self, partition: int) -> None:
        processor = self.runner.pipeline.reset_partition(partition)
        committed = self.source.committed_offset(partition)
        checkpoint, applied = processor.restore(self.changelog.read(partition, committed))
        # The changelog may predate a reversal this worker has already read; applying it again is idempotent.
        processor.apply_reversals(list(self.runner.pipeline.reversals.values()))
        processor.position, replay = committed, 0
        if checkpoint is not None and checkpoint < committed:
            # The state is as of its last checkpoint: the records since then are processed again, silently.
            processor.position, processor.replay_until = checkpoint, committed
            replay = committed - checkpoint
        # From where the state is: records fetched before this restore may come from anywhere (a revoked
        # partition's old position).
        self.source.seek(partition, processor.position)
        metrics.RESTORED_STATE_RECORDS.inc(applied)
        metrics.REPLAYED_INPUT_RECORDS.inc(replay)
        metrics.ASSIGNED_PARTITIONS.set(len(self.runner.pipeline.processors))
        metrics.record_state(self.runner.pipeline)
        log.info("partition %d assigned: restored %d state records, replaying %d input records",
                 partition, applied, replay)

    def drop_partition(self, partition: int) -> None:
        self.runner.pipeline.drop_partition(partition)
        metrics.ASSIGNED_PARTITIONS.set(len(self.runner.pipeline.processors))
        metrics.forget_partitions([partition])
        metrics.record_state(self.runner.pipeline)
        log.info("partition %d revoked", partition)

    def recover(self) -> None:
        """After an aborted batch: every partition's state to what was committed, and its input to where that state
        is (``restore_partition`` seeks there)."""
        for partition in self.source.assigned():
            self.restore_partition(partition)

    def healthy(self) -> tuple[bool, str]:
        idle = time.monotonic() - self.last_turn
        if idle > self.config.server.stall_after_s:
            return False, f"stalled: no loop turn for {idle:.0f}s"
        return True, f"ok: {len(self.runner.pipeline.processors)} partitions"

    def run(self) -> None:
        server = serve(self.config.server.host, self.config.server.port, self.healthy)
        log.info("warden run: instance %s, /metrics and /healthz on port %d", self.instance_id, server.server_port)
        try:
            while not self.stopping.is_set():
                self.turn()
            self.stop_cleanly()
        finally:
            server.shutdown()
            self.close()

    def stop_cleanly(self) -> None:
        """A checkpoint of every partition, so the next owner of these partitions replays nothing; skipped when the
        last batch's commit failed (the next owner replays from the committed offsets, as after a crash)."""
        try:
            self.runner.checkpoint_all()
        except KafkaError as error:
            log.warning("the last batch's commit failed (%s); stopping without a checkpoint", error)

    def turn(self) -> BatchResult | None:
        """One loop turn: config reload and reversals, then one batch (None when nothing came)."""
        self.last_turn = time.monotonic()
        self.between_batches()
        result = None
        try:
            result = self.runner.step()
        except ProducerFencedError:
            log.error("fenced: another worker took over instance id %s; stopping", self.instance_id)
            raise
        except KafkaError as error:
            log.warning("batch aborted (%s); rewinding to committed offsets", error)
            self.recover()
        metrics.record_consumer_lag(self.source.lags())
        return result

    # Enforcement inputs other than telemetry: config reload and reviewers' reversals, applied between batches.

    def between_batches(self) -> None:
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            reload_config(self.runner, self.config_path)
            self.config = self.runner.config
        reversals = self.reversals.take()
        if reversals:
            self.runner.pipeline.add_reversals(reversals)
            log.info("applied %d reversals", len(reversals))

    def request_reload(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: reloading the config before the next batch", signum)
        self.reload_requested.set()

    def stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then closing", signum)
        self.stopping.set()

    def close(self) -> None:
        self.sink.close()
        self.source.close()
        self.changelog.close()
        self.reversals.close()


def run_worker(config: WardenConfig, instance_id: str, config_path: str | None = None) -> None:
    worker = KafkaWorker(config, instance_id, config_path)
    signal.signal(signal.SIGHUP, worker.request_reload)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
