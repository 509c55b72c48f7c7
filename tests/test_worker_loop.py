"""The Kafka worker's loop pieces that need no broker: reversals read off the loop's thread, the poll that
also takes what arrived while the previous batch was processed, and the GC threshold setting."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from models.config import ConfigError, KafkaConfig, parse_config
from streams.kafka_io import KafkaSource
from streams.worker import ReversalPoller


class FakeFeed:
    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches
        self.closed = False
        self.polls = 0
        self.drained = threading.Event()

    def poll(self) -> list[Any]:
        self.polls += 1
        if not self.batches:
            self.drained.set()
            return []
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        return list(batch)

    def close(self) -> None:
        self.closed = True


def test_reversals_are_read_on_their_own_thread_and_taken_between_batches() -> None:
    first, second = object(), object()
    feed = FakeFeed([[first], KafkaError("broker away"), [], [second]])
    poller = ReversalPoller(feed, interval_s=0.001)  # type: ignore[arg-type]
    poller.start()
    try:
        assert feed.drained.wait(5)
        assert poller.take() == [first, second]  # a failed read is retried; arrival order is kept
        assert poller.take() == []
    finally:
        poller.close()
    assert feed.closed


def test_closing_a_poller_that_never_started_closes_its_feed() -> None:
    feed = FakeFeed([])
    ReversalPoller(feed).close()  # type: ignore[arg-type]
    assert feed.closed


def fetched(tp: TopicPartition, *offsets: int) -> list[ConsumerRecord]:
    """What kafka-python's poll hands out for ``tp`` at ``offsets``."""
    return [ConsumerRecord(tp.topic, tp.partition, -1, offset, 0, 0, b"k", b"{}", [], None, 1, 2, -1)
            for offset in offsets]


class FakeConsumer:
    """Answers each poll with the next prepared batch; records the timeouts and sizes asked for."""

    def __init__(self, answers: list[dict[TopicPartition, list[ConsumerRecord]]]) -> None:
        self.answers = answers
        self.asked: list[tuple[int, int]] = []
        self.generation = 1
        self.meanwhile: list[Any] = []  # what happens on the IO thread during each poll

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.asked.append((timeout_ms, max_records))
        if self.meanwhile:
            self.meanwhile.pop(0)()
        return self.answers.pop(0) if self.answers else {}

    def group_metadata(self) -> int:
        return self.generation

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought = (tp, offset)


def source(consumer: FakeConsumer, catch_up_ms: int, last_poll_ago_s: float) -> KafkaSource:
    made = KafkaSource.__new__(KafkaSource)
    made.config = KafkaConfig(fetch_catch_up_ms=catch_up_ms, poll_timeout_ms=500)
    made.consumer = consumer  # type: ignore[assignment]
    made.assign_hooks, made.revoke_hooks, made.awaiting_restore, made.revoked = [], [], set(), set()
    made._rebalance_lock = threading.Lock()
    made._last_poll_end = time.monotonic() - last_poll_ago_s
    made._sought = set()
    return made


P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_after_a_long_batch_the_poll_also_takes_what_arrived_meanwhile_in_offset_order() -> None:
    consumer = FakeConsumer([{P1: fetched(P1, 5), P0: fetched(P0, 1, 2)}, {P0: fetched(P0, 3), P1: fetched(P1, 6)}])
    records = source(consumer, catch_up_ms=20, last_poll_ago_s=0.5).poll(10)
    assert [(r.partition, r.offset) for r in records] == [(0, 1), (0, 2), (0, 3), (1, 5), (1, 6)]
    assert consumer.asked == [(500, 10), (20, 7)]  # the second poll waits at most catch_up_ms, for the room left


def test_a_restore_that_replays_from_a_checkpoint_drops_what_the_poll_fetched_from_the_committed_offset() -> None:
    # The join hands P1 over and the poll fetches it from the committed offset (7); its restore finds the state
    # checkpointed at 4, so 4..6 are processed first and 7 comes again after them.
    consumer = FakeConsumer([{P0: fetched(P0, 1), P1: fetched(P1, 7, 8)}])
    made = source(consumer, catch_up_ms=0, last_poll_ago_s=0.0)
    made.topic = "t"
    made.awaiting_restore = {1}
    made.assign_hooks.append(lambda partition: made.seek(partition, 4))
    records = made.poll(10)
    assert [(r.partition, r.offset) for r in records] == [(0, 1)]
    assert consumer.sought == (P1, 4)


def test_a_rebalance_noted_during_a_batch_drops_and_restores_state_at_the_next_poll_and_leaves_its_records_out() -> (
    None
):
    """The listener runs on the consumer's IO thread, at any moment: state is dropped and restored only in ``poll``,
    on the loop's thread, revocations first; the poll leaves out the records of the partitions it dropped or
    restored (the restore seeks; the next fetch starts where the state is)."""
    consumer = FakeConsumer([{P0: fetched(P0, 1)}, {P0: fetched(P0, 2), P1: fetched(P1, 8)}])
    made = source(consumer, catch_up_ms=0, last_poll_ago_s=0.0)
    made.topic = "t"
    hooks: list[tuple[str, int]] = []
    made.revoke_hooks.append(lambda partition: hooks.append(("drop", partition)))
    made.assign_hooks.append(lambda partition: (hooks.append(("restore", partition)), made.seek(partition, 3)))
    made.note_rebalance(assigned=[0, 1])
    assert [(r.partition, r.offset) for r in made.poll(10)] == []  # both restored; what came with them waits
    made.note_rebalance(revoked=[0, 1])  # mid-batch: nothing is dropped yet
    made.note_rebalance(assigned=[0])
    assert hooks == [("restore", 0), ("restore", 1)]
    assert [(r.partition, r.offset) for r in made.poll(10)] == []
    assert hooks[2:] == [("drop", 0), ("drop", 1), ("restore", 0)]
    assert made.awaiting_restore == set() and made.revoked == set()


def test_a_batch_commits_under_the_generation_its_poll_ended_in_without_the_partitions_that_moved() -> None:
    """A rebalance during the poll: the listener notes the revocation before the group moves to a new generation,
    so the batch's offsets carry the new one only when the revoked partition's records are left out. One noted
    after the poll is applied at the next, and the batch's offsets keep the generation it was revoked from, which
    the broker refuses."""
    consumer = FakeConsumer([{P0: fetched(P0, 1), P1: fetched(P1, 5)}, {P0: fetched(P0, 2)}])
    made = source(consumer, catch_up_ms=0, last_poll_ago_s=0.0)
    dropped: list[int] = []
    made.revoke_hooks.append(dropped.append)

    def group_moves_on() -> None:
        made.note_rebalance(revoked=[1])
        consumer.generation = 2

    consumer.meanwhile.append(group_moves_on)
    assert [(r.partition, r.offset) for r in made.poll(10)] == [(0, 1)]
    assert made.group_metadata == 2 and dropped == [1]
    made.note_rebalance(revoked=[0])  # during the batch
    consumer.generation = 3
    assert made.group_metadata == 2 and dropped == [1]
    assert made.poll(10) == [] and dropped == [1, 0]


@pytest.mark.parametrize(
    ("catch_up_ms", "last_poll_ago_s", "first"),
    [
        (20, 0.001, {P0: fetched(P0, 1)}),  # the previous batch was short: its fetch-ahead is fresh enough
        (0, 0.5, {P0: fetched(P0, 1)}),  # turned off
        (20, 0.5, {P0: fetched(P0, 1, 2)}),  # the batch is already full
        (20, 0.5, {}),  # nothing came: the poll already waited for the broker
    ],
)
def test_no_second_poll_when_it_cannot_help(
    catch_up_ms: int, last_poll_ago_s: float, first: dict[TopicPartition, list[ConsumerRecord]]
) -> None:
    consumer = FakeConsumer([first, {P0: fetched(P0, 9)}])
    source(consumer, catch_up_ms, last_poll_ago_s).poll(2)
    assert len(consumer.asked) == 1


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [("kafka", "fetch_catch_up_ms", -1), ("kafka", "fetch_catch_up_ms", 1001), ("pipeline", "gc_young_threshold", -1)],
)
def test_loop_settings_out_of_range_are_refused(section: str, field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{field}"):
        parse_config({section: {field: value}})

