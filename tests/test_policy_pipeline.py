"""The policy inside the pipeline: reversals from a file, the backtest, hot reload keeping state."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from detectors.registry import build_detectors
from enforcement.backtest import compare, format_backtest
from enforcement.policy import EnforcementPolicy
from models.action import ActionKind, ActionMode, ActionReversal, EnforcementAction
from models.config import WardenConfig
from models.telemetry import TelemetryEvent
from streams.cli import main, read_jsonl_models, replay_file
from streams.files import JsonlFileSink, JsonlFileSource
from streams.pipeline import PartitionProcessor
from streams.records import Channel
from streams.reload import reload_config
from streams.runner import Runner
from tests.conftest import BASE_TIME


@pytest.fixture
def surges(tmp_path: Path) -> Path:
    """One account: a quiet half hour then a burst of calls, twice, eight hours apart."""
    path = tmp_path / "surges.jsonl"
    lines: list[str] = []
    for hours in (0, 8):
        start = BASE_TIME + timedelta(hours=hours)
        times = [start + timedelta(minutes=m) for m in range(30)]
        times += [start + timedelta(minutes=31, seconds=i / 10) for i in range(400)]
        for ts in times:
            lines.append(json.dumps({
                "event_id": f"e{len(lines)}", "ts": ts.isoformat(), "account_id": "acct-1", "api_key_id": "key-1",
                "ip": "203.0.113.7", "user_agent": "sdk/1", "endpoint": "/v1/videos/text2video", "method": "POST",
                "status": 200, "credits": 1,
            }))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def replay_actions(config: WardenConfig, events: Path, directory: Path,
                   reversals: list[ActionReversal] | None = None) -> list[EnforcementAction]:
    outputs = {channel: directory / f"{channel.value}.jsonl"
               for channel in (Channel.ACTIONS, Channel.FINDINGS, Channel.DEAD_LETTERS)}
    replay_file(config, events, outputs, reversals=reversals)
    return read_jsonl_models(outputs[Channel.ACTIONS], EnforcementAction)


def test_replay_honours_reversals_from_a_file(surges: Path, tmp_path: Path) -> None:
    baseline = replay_actions(WardenConfig(), surges, tmp_path / "a")
    assert baseline, "the bursts must lead to an action"
    first = baseline[0]
    lifted = ActionReversal(action=first, lifted_at=first.ts + timedelta(minutes=5), author="jdoe", reason="load test")
    reversals_file = tmp_path / "reversals.jsonl"
    reversals_file.write_text(lifted.model_dump_json() + "\n", encoding="utf-8")
    out = tmp_path / "b"
    assert main(["replay", str(surges), "--actions-out", str(out / "actions.jsonl"),
                 "--findings-out", str(out / "findings.jsonl"), "--reversals", str(reversals_file)]) == 0
    honoured = read_jsonl_models(out / "actions.jsonl", EnforcementAction)
    assert first.action_id not in {action.action_id for action in honoured}
    # The later burst is new evidence: it still acts.
    assert [a.reasons[0].finding_id for a in honoured] == [a.reasons[0].finding_id for a in baseline[1:]]


def test_backtest_reports_per_detector_what_the_candidate_changes(
    surges: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate = tmp_path / "b.yaml"
    candidate.write_text(yaml.safe_dump({"policy_version": "candidate-2",
                                         "detectors": {"traffic_anomaly": {"shadow": True}}}), encoding="utf-8")
    assert main(["backtest", str(surges), "--config-b", str(candidate)]) == 0
    report = capsys.readouterr().out
    row = next(line for line in report.splitlines() if line.startswith("traffic_anomaly"))
    added, removed, changed, unchanged = (int(cell) for cell in row.split()[1:])
    assert (added, removed, unchanged) == (0, 0, 0) and changed >= 1
    assert "[enforce] → restrict account" in report and "[shadow]" in report


def test_compare_matches_actions_by_finding() -> None:
    config = WardenConfig()
    base = replay_like(config, ["f1", "f2"], ActionKind.RESTRICT)
    other = replay_like(config, ["f2", "f3"], ActionKind.SUSPEND)
    diff = compare(base, other)["crawler"]
    assert [a.reasons[0].finding_id for a in diff.added] == ["f3"]
    assert [a.reasons[0].finding_id for a in diff.removed] == ["f1"]
    assert [(a.action, b.action) for a, b in diff.changed] == [(ActionKind.RESTRICT, ActionKind.SUSPEND)]
    assert "crawler" in format_backtest({"crawler": diff})


def replay_like(config: WardenConfig, finding_ids: list[str], kind: ActionKind) -> list[EnforcementAction]:
    return [
        EnforcementAction.model_validate({
            "action_id": f"act-{fid}-{kind.value}", "ts": BASE_TIME, "account_id": "acct-1", "scope": "account",
            "action": kind.value, "duration_s": 60, "expires_at": BASE_TIME + timedelta(minutes=1),
            "reasons": [{"finding_id": fid, "detector": "crawler", "clauses": ["8.2.1"], "summary": "s", "score": 1}],
            "severity": "medium", "mode": "enforce", "requires_review": False, "policy_version": config.policy_version,
        })
        for fid in finding_ids
    ]


def test_hot_reload_keeps_policy_state_and_stamps_the_new_version(surges: Path, tmp_path: Path) -> None:
    small_batches = WardenConfig.model_validate({"pipeline": {"batch_size": 440}})
    outputs = {Channel.ACTIONS: tmp_path / "actions.jsonl", Channel.FINDINGS: tmp_path / "findings.jsonl"}
    source, sink = JsonlFileSource(surges), JsonlFileSink(outputs)
    runner = Runner(small_batches, source, sink)
    first = runner.step()
    assert first is not None and first.actions, "the first burst acts in the first batch"
    before = runner.pipeline.processors[0].policy.snapshot()

    broken = tmp_path / "broken.yaml"
    broken.write_text("enforcement: {ladders: {crawler: {steps: []}}}\n", encoding="utf-8")
    assert not reload_config(runner, broken)
    assert runner.config is small_batches

    reloaded = tmp_path / "v2.yaml"
    reloaded.write_text(yaml.safe_dump({"policy_version": "v2", "pipeline": {"batch_size": 440}}), encoding="utf-8")
    assert reload_config(runner, reloaded)
    assert runner.config.policy_version == "v2" and runner.config.kafka == small_batches.kafka
    assert runner.pipeline.processors[0].policy.snapshot() == before, "active actions and ladders survive"
    later = runner.run_to_end()
    source.close()
    sink.close()
    actions = read_jsonl_models(outputs[Channel.ACTIONS], EnforcementAction)
    assert later.actions and {a.policy_version for a in actions[len(first.actions):]} == {"v2"}
    # The second burst climbs the ladder: the offence remembered from before the reload counts.
    assert "1 earlier offence" in actions[-1].reasons[0].rule and actions[-1].mode is ActionMode.ENFORCE


def test_the_policy_decides_in_the_order_of_one_event_at_a_time(small_events: list[TelemetryEvent]) -> None:
    """Each detector steps over the whole batch; the policy still sees the findings by event, then detector."""
    config = WardenConfig()
    findings, actions = PartitionProcessor(0, config, changelog=False).process(small_events)
    detectors, policy = build_detectors(config), EnforcementPolicy(config)
    expected_findings, expected_actions = [], []
    for event in small_events:
        for detector in detectors:
            for finding in detector.observe(event):
                expected_findings.append(finding)
                action = policy.decide(finding, event)
                if action is not None:
                    expected_actions.append(action)
    assert len({finding.detector for finding in findings}) == len(detectors)  # every detector found something
    assert findings == expected_findings
    assert actions == expected_actions and actions
