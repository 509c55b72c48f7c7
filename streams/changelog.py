"""The state changelog of one input partition: checkpoints written a share per batch, and the restore.

A checkpoint is the state, as of one input position, of every subject changed since the previous checkpoint:
one record per subject (its state in every store that holds it, or a tombstone), then a marker. Written all at
once, a checkpoint held its batch up (at 10,000 accounts, one 357 ms turn every few seconds). So a checkpoint
starts at a batch's end and is then written over the next batches, at most ``checkpoint_records_per_batch``
subjects each, while those batches go on changing state: a subject still to be written is copied (its record
made) just before its first change (copy on write, through ``SubjectStore.before_change``).

Compaction keeps only a key's latest record, and a checkpoint half written when the worker dies must not have
overwritten the state the restore falls back on. A subject therefore has two keys, written in turn: while a
checkpoint is under way, every subject's record of the last complete one survives under its other key. A
restore takes, per subject, the newer of its two records at or before the last marker's position, and replays
the input from there.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from detectors.state import SubjectStore
from streams.records import Channel, OutputRecord

CHANGELOG_BATCH_END = "batch_end"
"""Header of changelog records: the input offset the state they hold has reached (the next offset after the
last event it includes). Without transactions, state may reach the changelog for a batch whose offsets were
not committed; that batch is processed again after a restart, so its changes must not be restored twice."""
MARKER_VALUE = b"{}"
"""The checkpoint marker's value. Not a tombstone: compaction would drop it in time, and a restore would then
replay from an older record's position onto state that already holds what follows it."""

LatestRecords = dict[bytes, tuple[int, bytes | None]]
"""What a compacted changelog partition holds: per key, the latest record's ``batch_end`` and value. A restore
takes it over and empties it as it goes."""


def marker_key(partition: int) -> bytes:
    """The key of a partition's checkpoint marker; its ``batch_end`` is where a restore replays the input from,
    even when the checkpoint had no other record."""
    return f"{partition}|".encode()


def subject_key(partition: int, slot: int, subject: str) -> bytes:
    """One of the two keys (``slot`` 0 or 1) of one subject of one partition."""
    return f"{partition}|{slot}|{subject}".encode()


class Changelog:
    """Checkpoints of one partition's stores, each spread over batches, and the restore from what they wrote."""

    def __init__(self, partition: int, stores: list[tuple[str, SubjectStore[Any]]]) -> None:
        self.partition = partition
        self._stores = stores
        self._pending: set[str] = set()  # changed since the checkpoint under way (or the last) began
        self.unwritten: set[str] = set()  # the checkpoint under way has still to write them; stores check it
        self._order: list[str] = []  # the same, in the order they are written (a popped one may be copied)
        self._copies: dict[str, bytes | None] = {}  # records made before a change, still to be written
        self.copy_bytes = 0
        """What the copies still to be written hold."""
        self._headers: tuple[tuple[str, bytes], ...] | None = None  # the checkpoint under way's, None: none is
        self._odd: set[str] = set()  # subjects whose latest record is under key slot 1 (the others: slot 0)
        self._tombstoned: set[str] = set()  # a tombstone under one key, maybe a state under the other
        self.started: tuple[float, int] | None = None
        """When the last checkpoint began, and its position; None before the first."""
        self.completed: int | None = None
        """The position of the last complete checkpoint: where a restore would replay the input from."""
        for _, store in stores:
            store.track_changes = True
            store.unwritten = self.unwritten
            store.before_change = self._copy

    @property
    def under_way(self) -> bool:
        return self._headers is not None

    def changed(self) -> set[str]:
        """The subjects changed (or gone) since the last checkpoint began; the stores' change sets drain into it."""
        self._pending.update(*(store.drain_dirty() for _, store in self._stores))
        return self._pending

    def start(self, now: float, position: int) -> None:
        """Begin a checkpoint of the state as it is now, at input ``position``; ``write`` writes it."""
        if self.under_way:
            raise RuntimeError(f"partition {self.partition}: a checkpoint is already under way")
        subjects = self.changed()
        self._order = sorted(subjects, reverse=True)  # popped from the end: written in order
        self.unwritten.update(subjects)
        self._pending = set()
        self._headers = ((CHANGELOG_BATCH_END, str(position).encode()),)
        self.started = (now, position)

    def write(self, budget: int, shed_bytes: int = 0) -> list[OutputRecord]:
        """Up to ``budget`` subject records of the checkpoint under way, copies first, and past the budget more
        copies until ``shed_bytes`` of them are written; its marker once all are written."""
        if self._headers is None:
            return []
        records: list[OutputRecord] = []
        copies, order, unwritten = self._copies, self._order, self.unwritten
        while copies and (len(records) < budget or shed_bytes > 0):
            subject, value = copies.popitem()
            size = len(value) if value is not None else 0
            self.copy_bytes -= size
            shed_bytes -= size
            records.append(self._record(subject, value))
        while unwritten and len(records) < budget:
            subject = order.pop()
            if subject in unwritten:  # else it was copied before a change
                unwritten.discard(subject)
                records.append(self._record(subject, self._value(subject)))
        if not unwritten and not copies:
            order.clear()
            records.append(OutputRecord(Channel.STATE, marker_key(self.partition), MARKER_VALUE, self._headers,
                                        partition=self.partition))
            self._headers = None
            assert self.started is not None  # set with the headers
            self.completed = self.started[1]
        return records

    def complete(self, now: float, position: int) -> list[OutputRecord]:
        """The rest of the checkpoint under way, then a whole new one at ``position``."""
        records = self.write(len(self.unwritten) + len(self._copies))
        self.start(now, position)
        return [*records, *self.write(len(self.unwritten))]

    def _copy(self, subject: str) -> None:
        """A store is about to change ``subject`` while the checkpoint under way has yet to write it."""
        self.unwritten.discard(subject)
        value = self._copies[subject] = self._value(subject)
        self.copy_bytes += len(value) if value is not None else 0

    def _value(self, subject: str) -> bytes | None:
        states = {name: data for name, store in self._stores if (data := store.dump_of(subject)) is not None}
        return orjson.dumps(states) if states else None

    def _record(self, subject: str, value: bytes | None) -> OutputRecord:
        """The subject's record under its other key, which becomes its latest."""
        slot = 0 if subject in self._odd else 1
        self._set_slot(subject, slot)
        if value is not None:
            self._tombstoned.discard(subject)
        elif subject in self._tombstoned:
            # Both keys hold a tombstone now: nothing of the subject is left to restore.
            self._tombstoned.discard(subject)
            self._odd.discard(subject)
        else:
            # The other key may still hold a state, which compaction would keep after this tombstone's
            # retention: the next checkpoint writes a tombstone under it too.
            self._tombstoned.add(subject)
            self._pending.add(subject)
        assert self._headers is not None
        return OutputRecord(Channel.STATE, subject_key(self.partition, slot, subject), value, self._headers,
                            partition=self.partition)

    def restore(self, latest: LatestRecords) -> tuple[int | None, int]:
        """Rebuild the stores from a compacted changelog partition: per subject, the newer of its two records at
        or before the last marker's position. Returns that position (None without a marker) and how many
        records were applied. A record past it is of a checkpoint that was never completed: its subject is
        written again by the next checkpoint, under that record's key, so it cannot outlive the restore.

        ``latest`` is emptied: the records not chosen are dropped before any state is built, and each chosen one
        as its state is applied, so the bytes read and the state built are not both held whole (the two keys of
        a subject would hold about twice the state's size as JSON)."""
        checkpoint = latest.get(marker_key(self.partition), (None, None))[0]
        by_subject: dict[str, list[tuple[int, int, bytes]]] = {}
        for key, (batch_end, _) in latest.items():
            parts = key.decode().split("|", 2)
            if len(parts) == 3:  # not the marker
                by_subject.setdefault(parts[2], []).append((batch_end, int(parts[1]), key))
        chosen: list[tuple[int, str, bytes]] = []
        for subject, records in by_subject.items():
            complete = [record for record in records if checkpoint is None or record[0] <= checkpoint]
            if len(complete) < len(records):
                _, stale_slot, _ = next(record for record in records if record not in complete)
                self._set_slot(subject, 1 - stale_slot)  # the next write overwrites the stale record
                self._pending.add(subject)
            if not complete:
                continue
            batch_end, newest_slot, key = max(complete, key=lambda record: record[0])
            if len(complete) == len(records):
                self._set_slot(subject, newest_slot)
            if latest[key][1] is None and any(latest[other][1] is not None for _, _, other in complete):
                self._tombstoned.add(subject)
                self._pending.add(subject)
            chosen.append((batch_end, subject, key))
        kept = {key for _, _, key in chosen}
        for key in [key for key in latest if key not in kept]:
            del latest[key]
        chosen.sort(key=lambda record: record[0])  # the oldest first: the least recently used, as near as known
        for _, subject, key in chosen:
            value = latest.pop(key)[1]
            states = {} if value is None else orjson.loads(value)
            for name, store in self._stores:
                store.apply_change(subject, states.get(name))
        self.completed = checkpoint
        if checkpoint is not None:
            # The changelog holds a complete checkpoint, so the next need not be written whole in one batch
            # (a failover's first batch would carry it); it is due at once, like one whose interval is over.
            self.started = (-math.inf, checkpoint)
        return checkpoint, len(chosen)

    def _set_slot(self, subject: str, slot: int) -> None:
        if slot:
            self._odd.add(subject)
        else:
            self._odd.discard(subject)

    def take_over(self, previous: Changelog) -> None:
        """Go on where ``previous`` (of the same partition, before a hot reload) was: what changed since its last
        checkpoint, the checkpoint under way, and which key each subject was last written under."""
        self._pending = previous.changed()
        self.unwritten.update(previous.unwritten)
        self._order, self._copies, self._headers = previous._order, previous._copies, previous._headers
        self.copy_bytes = previous.copy_bytes
        self._odd, self._tombstoned = previous._odd, previous._tombstoned
        self.started, self.completed = previous.started, previous.completed
