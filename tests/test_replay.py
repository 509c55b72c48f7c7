"""The embedded pipeline over files: byte-identical replays, and dead letters that lose nothing."""

from __future__ import annotations

import base64
import gc
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from models.action import EnforcementAction
from models.config import WardenConfig
from models.finding import Finding
from streams.cli import main, replay_file
from streams.files import JsonlFileSink, JsonlFileSource
from streams.pipeline import Pipeline
from streams.records import Channel, OutputRecord, SourceRecord
from streams.reload import reload_config
from streams.runner import Runner, set_gc_threshold
from streams.sink import Sink
from streams.source import Source
from tests.conftest import EventFactory


def _outputs(directory: Path) -> dict[Channel, Path]:
    return {
        Channel.ACTIONS: directory / "actions.jsonl",
        Channel.FINDINGS: directory / "findings.jsonl",
        Channel.DEAD_LETTERS: directory / "dlq.jsonl",
    }


def test_replaying_the_same_file_twice_gives_the_same_bytes(
    small_simulation: tuple[Path, Path], tmp_path: Path
) -> None:
    events, _ = small_simulation
    first, second = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    replay_file(WardenConfig(), events, first)
    replay_file(WardenConfig(), events, second)
    for channel in (Channel.ACTIONS, Channel.FINDINGS):
        assert first[channel].read_bytes() == second[channel].read_bytes()
    assert first[Channel.ACTIONS].stat().st_size > 0, "a simulation with abuse must produce actions"


def test_batch_size_does_not_change_outputs(small_simulation: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = small_simulation
    default, tiny = _outputs(tmp_path / "default"), _outputs(tmp_path / "tiny")
    replay_file(WardenConfig(), events, default)
    replay_file(WardenConfig.model_validate({"pipeline": {"batch_size": 7}}), events, tiny)
    assert default[Channel.ACTIONS].read_bytes() == tiny[Channel.ACTIONS].read_bytes()
    assert default[Channel.FINDINGS].read_bytes() == tiny[Channel.FINDINGS].read_bytes()


def test_gzip_input_and_output_match_plain(small_simulation: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = small_simulation
    packed = tmp_path / "events.jsonl.gz"
    with open(events, "rb") as raw, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(raw, out)
    plain = _outputs(tmp_path / "plain")
    gz = {channel: path.with_suffix(".jsonl.gz") for channel, path in _outputs(tmp_path / "gz").items()}
    replay_file(WardenConfig(), events, plain)
    replay_file(WardenConfig(), packed, gz)
    assert gzip.decompress(gz[Channel.ACTIONS].read_bytes()) == plain[Channel.ACTIONS].read_bytes()


def test_outputs_validate_against_the_contracts(small_simulation: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = small_simulation
    outputs = _outputs(tmp_path)
    replay_file(WardenConfig(), events, outputs)
    findings = [Finding.model_validate_json(line) for line in outputs[Channel.FINDINGS].read_bytes().splitlines()]
    lines = outputs[Channel.ACTIONS].read_bytes().splitlines()
    actions = [EnforcementAction.model_validate_json(line) for line in lines]
    assert findings and actions
    assert all(finding.clauses for finding in findings)
    finding_ids = {finding.finding_id for finding in findings}
    assert all(reason.finding_id in finding_ids for action in actions for reason in action.reasons)
    assert len({action.action_id for action in actions}) == len(actions)


MALFORMED = {
    "truncated": b'{"event_id": "x1", "ts": "2026-01-05T00:00:00Z", "account_id": "a',
    "wrong_types": (
        b'{"event_id": "x2", "ts": "2026-01-05T00:00:00Z", "account_id": "a", "api_key_id": "k", "ip": "1.2.3.4",'
        b' "endpoint": "/v1/videos", "method": "GET", "status": "two hundred", "credits": "lots"}'
    ),
    "missing_fields": b'{"event_id": "x3", "ts": "2026-01-05T00:00:00Z"}',
    "binary_junk": bytes(range(256)).replace(b"\n", b"").replace(b"\r", b""),
    "not_an_object": b"[1, 2, 3]",
}


def test_malformed_lines_go_to_the_dead_letters_with_reasons(
    small_simulation: tuple[Path, Path], tmp_path: Path
) -> None:
    events, _ = small_simulation
    good = events.read_bytes().splitlines()[:500]
    huge = b'{"event_id": "x6", "prompt": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    bad_lines = [*MALFORMED.values(), huge]
    mixed = tmp_path / "mixed.jsonl"
    # Interleave: good lines before, between and after the bad ones.
    lines = good[:100] + bad_lines[:3] + good[100:300] + bad_lines[3:] + good[300:]
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    outputs = _outputs(tmp_path / "out")
    summary = replay_file(WardenConfig(), mixed, outputs)

    assert summary.invalid == len(bad_lines)
    assert summary.events == len(good)
    letters = [json.loads(line) for line in outputs[Channel.DEAD_LETTERS].read_bytes().splitlines()]
    assert len(letters) == len(bad_lines)
    by_line = {letter["offset"]: letter for letter in letters}
    assert sorted(by_line) == [101, 102, 103, 304, 305, 306]
    for letter, original in zip(letters, bad_lines, strict=True):
        assert letter["reason"]
        if "original" in letter:
            kept = letter["original"].encode()
        else:
            kept = base64.b64decode(letter["original_base64"])
        assert kept == original, "the dead letter must keep the exact original bytes"
    reasons = {letter["offset"]: letter["reason"] for letter in letters}
    assert "Invalid JSON" in reasons[101]
    assert "status:" in reasons[102] and "credits:" in reasons[102]
    assert "account_id: Field required" in reasons[103]
    assert "original_base64" in by_line[304]
    assert "object" in reasons[305]
    assert "too large" in reasons[306]


def test_replay_cli_prints_a_summary_and_counts_dead_letters(tmp_path: Path, capsys: object) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(MALFORMED["truncated"] + b"\n\n" + MALFORMED["missing_fields"] + b"\n")
    code = main([
        "replay", str(source), "--actions-out", str(tmp_path / "a.jsonl"), "--findings-out", str(tmp_path / "f.jsonl"),
    ])
    assert code == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "dead letters" in printed and "2" in printed
    default_dlq = tmp_path / "dead-letters.jsonl"
    assert len(default_dlq.read_bytes().splitlines()) == 2


def test_bad_config_stops_replay_with_field_and_reason(tmp_path: Path, capsys: object) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("detectors:\n  key_sharing:\n    max_networks: -1\n", encoding="utf-8")
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"")
    try:
        main(["replay", str(source), "--actions-out", str(tmp_path / "a"), "--findings-out", str(tmp_path / "f"),
              "--config", str(config)])
    except SystemExit as stop:
        assert stop.code == 2
    else:
        raise AssertionError("a bad config must stop the start")
    assert "detectors.key_sharing.max_networks" in capsys.readouterr().err  # type: ignore[attr-defined]
    assert not (tmp_path / "a").exists()


def test_a_runner_sets_the_youngest_generations_collection_threshold_and_a_reload_resets_it(
    small_simulation: tuple[Path, Path], tmp_path: Path
) -> None:
    # A replay (like `warden run`) sets it: at Python's 700, collections took a fifth of a replay's time.
    before = gc.get_threshold()
    events, _ = small_simulation
    try:
        set_gc_threshold(0)  # 0 keeps what is set
        assert gc.get_threshold() == before
        source, sink = JsonlFileSource(events), JsonlFileSink(_outputs(tmp_path))
        runner = Runner(WardenConfig.model_validate({"pipeline": {"gc_young_threshold": 12_345}}), source, sink)
        assert gc.get_threshold() == (12_345, *before[1:])
        reloaded = tmp_path / "warden.yaml"
        reloaded.write_text("pipeline:\n  gc_young_threshold: 54321\n", encoding="utf-8")
        assert reload_config(runner, reloaded)
        assert gc.get_threshold() == (54_321, *before[1:])
        source.close()
        sink.close()
    finally:
        gc.set_threshold(*before)


def test_a_record_with_no_value_is_a_dead_letter_and_the_batch_goes_on(make_event: EventFactory) -> None:
    """A Kafka tombstone (a record whose value is null) on the input topic: refused with its reason, like any
    malformed record, and the events around it are processed."""
    good = make_event(0).model_dump_json().encode()
    records = [SourceRecord(good, 0, 7), SourceRecord(None, 0, 8), SourceRecord(good, 0, 9)]
    result = Pipeline(WardenConfig(), frozenset(Channel), "usage").process(records)
    assert (result.events, result.invalid) == (2, 1)
    (letter,) = [output for output in result.outputs if output.channel is Channel.DEAD_LETTERS]
    assert dict(letter.headers)["reason"] == b"record has no value (a tombstone)"
    assert dict(letter.headers)["offset"] == b"8" and letter.value is None
    assert result.positions == {0: 10}


class _RecordingSource(Source):
    def __init__(self, batches: list[list[SourceRecord]], log: list[Any]) -> None:
        self.batches, self.log = batches, log

    def poll(self, max_records: int) -> list[SourceRecord]:
        return self.batches.pop(0) if self.batches else []

    @property
    def exhausted(self) -> bool:
        return not self.batches

    def commit(self, positions: dict[int, int]) -> None:
        self.log.append(("commit", positions))


class _RecordingSink(Sink):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def channels(self) -> frozenset[Channel]:
        return frozenset({Channel.DEAD_LETTERS})

    def begin(self, source: Source, positions: dict[int, int]) -> None:
        self.log.append(("begin", dict(positions)))
        super().begin(source, positions)

    def add(self, record: OutputRecord) -> None:
        self.log.append(("add", record.channel))

    def flush(self) -> None:
        self.log.append(("flush",))

    def abort(self) -> None:
        self.log.append(("abort",))

    def advance(self) -> None:
        self.log.append(("advance",))


def test_a_batch_begins_with_the_positions_it_commits_and_commits_them_after_its_outputs(
    make_event: EventFactory,
) -> None:
    """The positions are known before the batch is processed (a transactional sink sends them ahead), and the
    default sink commits them only once the outputs are flushed: a crash in between repeats, never loses."""
    good = make_event(0).model_dump_json().encode()
    batches = [[SourceRecord(good, 0, 4), SourceRecord(b"{", 0, 5), SourceRecord(good, 1, 7)]]
    log: list[Any] = []
    runner = Runner(WardenConfig(), _RecordingSource(batches, log), _RecordingSink(log))
    runner.pipeline.processor(1).replay_until = 9  # a restore replaying partition 1 up to offset 9
    result = runner.step()
    assert result is not None and result.positions == {0: 6, 1: 9}
    assert log == [
        ("begin", {0: 6, 1: 9}), ("advance",), ("add", Channel.DEAD_LETTERS), ("flush",), ("commit", {0: 6, 1: 9})
    ]


def test_the_sink_advances_after_each_chunk_of_a_batch(make_event: EventFactory) -> None:
    """A transactional sink whose last commit completes in the background opens the batch's transaction at the
    first chance: the runner gives it one after each chunk of records, before the batch's outputs are added."""
    value = make_event(0).model_dump_json().encode()
    records = [SourceRecord(value, 0, offset) for offset in range(2_500)] + [SourceRecord(b"{", 0, 2_500)]
    log: list[Any] = []
    Runner(WardenConfig(), _RecordingSource([records], log), _RecordingSink(log)).step()
    assert [entry[0] for entry in log] == ["begin", "advance", "advance", "advance", "add", "flush", "commit"]


def test_a_batch_whose_begin_fails_is_aborted(make_event: EventFactory) -> None:
    """A transactional sink opens its transaction, then sends the offsets: if that fails, the open transaction
    must be aborted, or the next batch could not begin one."""

    class FailingBegin(_RecordingSink):
        def begin(self, source: Source, positions: dict[int, int]) -> None:
            super().begin(source, positions)
            raise RuntimeError("offsets refused")

    log: list[Any] = []
    batches = [[SourceRecord(make_event(0).model_dump_json().encode(), 0, 0)]]
    runner = Runner(WardenConfig(), _RecordingSource(batches, log), FailingBegin(log))
    with pytest.raises(RuntimeError, match="offsets refused"):
        runner.step()
    assert log == [("begin", {0: 1}), ("abort",)]
