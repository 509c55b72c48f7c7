"""The runner: poll a batch, process it, hand the outputs to the sink, commit. Backend-agnostic."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from models.config import WardenConfig
from streams import metrics
from streams.pipeline import BatchResult, Pipeline
from streams.sink import Sink
from streams.source import Source


@dataclass
class RunSummary:
    batches: int = 0
    records: int = 0
    events: int = 0
    invalid: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.events += result.events
        self.invalid += result.invalid
        self.records += result.events + result.invalid
        for finding in result.findings:
            self.findings[finding.detector] = self.findings.get(finding.detector, 0) + 1
        for action in result.actions:
            label = f"{action.action.value} ({action.mode.value})"
            self.actions[label] = self.actions.get(label, 0) + 1

    def table(self) -> str:
        rows = [("records read", self.records), ("valid events", self.events), ("dead letters", self.invalid)]
        rows += [(f"findings: {name}", count) for name, count in sorted(self.findings.items())]
        rows += [(f"actions: {name}", count) for name, count in sorted(self.actions.items())]
        width = max(len(label) for label, _ in rows)
        lines = [f"{'':-<{width}}  {'':->10}"]
        lines += [f"{label:<{width}}  {count:>10,}" for label, count in rows]
        return "\n".join([*lines, lines[0]])


ProgressCallback = Callable[[Source, RunSummary], None]


def set_gc_threshold(young: int) -> None:
    """The youngest generation's collection threshold for this process (``pipeline.gc_young_threshold``; 0 keeps
    what is set). The older generations keep theirs: a full collection still runs, only rarer, since a batch's
    short-lived objects no longer reach the oldest generation and count towards one."""
    if young:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(young, middle, oldest)


class Runner:
    """Drives records from a source through the pipeline into a sink, one commit point per batch. The process
    runs one runner: it sets the process's collection threshold from its config."""

    def __init__(
        self, config: WardenConfig, source: Source, sink: Sink, wall_clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        set_gc_threshold(config.pipeline.gc_young_threshold)
        self.source = source
        self.sink = sink
        # Only a live run has a meaningful wall clock to measure event lag against; a replay passes none.
        self.wall_clock = wall_clock
        self.pipeline = Pipeline(config, sink.channels(), source.name)
        self.summary = RunSummary()

    def reconfigure(self, config: WardenConfig) -> None:
        """Hot reload between batches: the pipeline keeps its state under the new config."""
        self.config = config
        set_gc_threshold(config.pipeline.gc_young_threshold)
        self.pipeline.reconfigure(config)

    def step(self) -> BatchResult | None:
        """One batch: poll, process, emit, commit. None when the source had nothing."""
        records = self.source.poll(self.config.pipeline.batch_size)
        if not records:
            return None
        started = time.perf_counter()
        with self._transaction(self.pipeline.commit_positions(records)):
            result = self.pipeline.process(records, between_chunks=self.sink.advance)
            for output in result.outputs:
                self.sink.add(output)
            self.sink.commit()
        metrics.record_batch(result, time.perf_counter() - started, self.wall_clock() if self.wall_clock else None)
        metrics.record_state(self.pipeline)
        self.summary.add(result)
        return result

    def checkpoint_all(self) -> None:
        """Write a checkpoint of every partition's state now, in a transaction of its own (a clean stop)."""
        records = self.pipeline.checkpoint_all()
        if not records:
            return
        with self._transaction({}):
            for record in records:
                self.sink.add(record)
            self.sink.commit()

    @contextmanager
    def _transaction(self, positions: dict[int, int]) -> Iterator[None]:
        """One commit point, taking the source to ``positions``: what is added inside goes out with the commit, or
        not at all."""
        try:
            # Inside: a transactional begin may fail after opening the transaction (sending the offsets ahead).
            self.sink.begin(self.source, positions)
            yield
        except BaseException:
            metrics.TRANSACTIONS.labels("aborted").inc()
            self.sink.abort()
            raise

    def run_to_end(self, on_batch: ProgressCallback | None = None) -> RunSummary:
        """Process until the source is exhausted (files); a live source is driven by its own loop."""
        while not self.source.exhausted:
            self.step()
            if on_batch is not None:
                on_batch(self.source, self.summary)
        self.sink.flush()
        return self.summary
