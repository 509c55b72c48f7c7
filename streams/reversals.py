"""The reversals topic (``enforcement.reversals.v1``): actions a reviewer lifted, fed back to the policy.

Every worker reads the whole topic, with no consumer group and from the beginning at each start:
reversals are few (people write them), applying one is idempotent, and the policy needs each one
on whichever worker owns the account's partition now or later. So a crash never loses a reversal,
and no offsets need committing.
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from models.action import ActionReversal
from models.config import KafkaConfig

log = logging.getLogger(__name__)


class ReversalFeed:
    def __init__(self, config: KafkaConfig) -> None:
        self.topic = config.topics.reversals
        self.consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **config.security.client_options(),
        )
        self.assigned = False

    def _assign(self) -> bool:
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            return False
        topic_partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(topic_partitions)
        self.consumer.seek_to_beginning(*topic_partitions)
        self.assigned = True
        return True

    def poll(self) -> list[ActionReversal]:
        """Reversals that arrived since the last call (none while the topic does not exist yet)."""
        if not self.assigned and not self._assign():
            return []
        reversals = []
        for records in self.consumer.poll(timeout_ms=0).values():
            for record in records:
                try:
                    reversals.append(ActionReversal.model_validate_json(record.value))
                except (ValidationError, TypeError) as error:
                    log.error("reversal at %s-%d@%d ignored: %s", record.topic, record.partition, record.offset, error)
        return reversals

    def close(self) -> None:
        self.consumer.close()
