"""The ``warden`` command line: demo, replay, backtest, simulate, evaluate, schema, run."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from enforcement.backtest import compare, format_backtest
from models.action import ActionReversal, EnforcementAction
from models.config import ConfigError, WardenConfig, load_config
from models.finding import Finding
from models.schemas import CONTRACTS, schema_text, write_schemas
from models.truth import ScenarioTruth
from streams import metrics
from streams.evaluation import evaluate, format_report
from streams.files import JsonlFileSink, JsonlFileSource, open_binary
from streams.health import serve
from streams.records import Channel
from streams.runner import Runner, RunSummary
from streams.simulator import SimulationSpec, write_simulation
from streams.source import Source

EXIT_BAD_CONFIG = 2


def replay_file(
    config: WardenConfig,
    input_path: Path,
    outputs: dict[Channel, Path],
    show_progress: bool = False,
    reversals: list[ActionReversal] | None = None,
) -> RunSummary:
    """The embedded pipeline over one file: the same input and config give byte-identical outputs."""
    source = JsonlFileSource(input_path)
    sink = JsonlFileSink(outputs)
    _, total = source.progress()
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay", disable=not show_progress, leave=False)

    def advance(src: Source, summary: RunSummary) -> None:
        position, _ = src.progress()
        bar.update(position - bar.n)
        bar.set_postfix(events=summary.events, dead=summary.invalid, refresh=False)

    try:
        runner = Runner(config, source, sink)
        runner.pipeline.add_reversals(reversals or [])
        return runner.run_to_end(advance)
    finally:
        bar.close()
        source.close()
        sink.close()


M = TypeVar("M", Finding, ScenarioTruth, EnforcementAction, ActionReversal)


def read_jsonl_models(path: Path, model: type[M]) -> list[M]:
    with open_binary(path, "r") as handle:
        return [model.model_validate_json(line) for line in handle if line.strip()]


def _config(path: str | None) -> WardenConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        print(f"warden: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG) from None


def cmd_replay(args: argparse.Namespace) -> int:
    config = _config(args.config)
    actions_out = Path(args.actions_out)
    outputs = {
        Channel.ACTIONS: actions_out,
        Channel.FINDINGS: Path(args.findings_out),
        Channel.DEAD_LETTERS: Path(args.dlq_out) if args.dlq_out else actions_out.with_name("dead-letters.jsonl"),
    }
    started = time.perf_counter()
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    # A long replay can be watched live like a worker; /healthz only says the process is up.
    server = None if args.metrics_port is None else serve(config.server.host, args.metrics_port, _replaying)
    try:
        summary = replay_file(config, Path(args.input), outputs, show_progress=show, reversals=_reversals(args))
    finally:
        if server is not None:
            server.shutdown()
    elapsed = time.perf_counter() - started
    print(summary.table())
    rate = summary.records / elapsed if elapsed > 0 else 0.0
    print(f"{summary.records:,} records in {elapsed:.1f}s ({rate:,.0f}/s)")
    print(f"dead letters → {outputs[Channel.DEAD_LETTERS]}")
    if args.metrics_out:
        metrics.write_exposition(Path(args.metrics_out))
        print(f"metrics → {args.metrics_out}")
    return 0


def _reversals(args: argparse.Namespace) -> list[ActionReversal]:
    return read_jsonl_models(Path(args.reversals), ActionReversal) if args.reversals else []


def cmd_backtest(args: argparse.Namespace) -> int:
    """The same history under config A and config B, in-process; prints what B changes, per detector."""
    configs = {"a": _config(args.config_a), "b": _config(args.config_b)}
    reversals = _reversals(args)
    actions: dict[str, list[EnforcementAction]] = {}
    with tempfile.TemporaryDirectory(prefix="warden-backtest-") as scratch:
        for name, config in configs.items():
            outputs = {
                channel: Path(scratch) / f"{name}-{channel.value}.jsonl"
                for channel in (Channel.ACTIONS, Channel.FINDINGS, Channel.DEAD_LETTERS)
            }
            replay_file(config, Path(args.input), outputs, reversals=reversals)
            actions[name] = read_jsonl_models(outputs[Channel.ACTIONS], EnforcementAction)
    print(f"A = {args.config_a or 'defaults'} ({configs['a'].policy_version}): {len(actions['a'])} actions")
    print(f"B = {args.config_b or 'defaults'} ({configs['b'].policy_version}): {len(actions['b'])} actions")
    print(format_backtest(compare(actions["a"], actions["b"]), examples=args.examples))
    return 0


def _replaying() -> tuple[bool, str]:
    return True, "ok: replaying"


def _spec(args: argparse.Namespace) -> SimulationSpec:
    start = datetime.fromisoformat(args.start).astimezone(UTC) if args.start else SimulationSpec.start
    return SimulationSpec(
        accounts=args.accounts,
        start=start,
        duration_s=int(args.hours * 3600),
        seed=args.seed,
        scenarios_per_kind=args.scenarios_per_kind,
        hard=args.hard,
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    summary = write_simulation(_spec(args), Path(args.out), Path(args.truth))
    print(f"wrote {summary.events:,} events for {summary.accounts} accounts to {args.out}; truth → {args.truth}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    truth = read_jsonl_models(Path(args.truth), ScenarioTruth)
    findings = read_jsonl_models(Path(args.findings), Finding)
    print(format_report(evaluate(truth, findings, grace_s=args.grace_s)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args.config)
    with tempfile.TemporaryDirectory(prefix="warden-demo-") as scratch:
        workdir = Path(args.keep) if args.keep else Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        events, truth_path = workdir / "telemetry.jsonl.gz", workdir / "truth.jsonl"
        started = time.perf_counter()
        simulated = write_simulation(_spec(args), events, truth_path)
        print(f"simulated {simulated.events:,} API calls from {simulated.accounts} accounts "
              f"({time.perf_counter() - started:.1f}s)")
        outputs = {
            Channel.ACTIONS: workdir / "actions.jsonl",
            Channel.FINDINGS: workdir / "findings.jsonl",
            Channel.DEAD_LETTERS: workdir / "dead-letters.jsonl",
        }
        started = time.perf_counter()
        summary = replay_file(config, events, outputs, show_progress=sys.stderr.isatty())
        print(f"replayed them through every detector and the policy ({time.perf_counter() - started:.1f}s)")
        print(summary.table())
        truth = read_jsonl_models(truth_path, ScenarioTruth)
        findings = read_jsonl_models(outputs[Channel.FINDINGS], Finding)
        print(format_report(evaluate(truth, findings)))
        if args.keep:
            print(f"files kept in {workdir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args.config)
    overrides: dict[str, object] = {}
    if args.bootstrap_servers:
        overrides["bootstrap_servers"] = args.bootstrap_servers
    if args.group_id:
        overrides["group_id"] = args.group_id
    if overrides:
        config = config.model_copy(update={"kafka": config.kafka.model_copy(update=overrides)})
    if args.metrics_port is not None:
        config = config.model_copy(update={"server": config.server.model_copy(update={"port": args.metrics_port})})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Imported here so that replay and the demo never load the Kafka client.
    from streams.worker import run_worker

    run_worker(config, args.instance_id or socket.gethostname(), config_path=args.config)
    return 0


def cmd_score_series(args: argparse.Namespace) -> int:
    # The traffic detector's own model and settings, so a try on one's own metrics shows what it would do.
    from detectors.traffic import series_params
    from streams.series import SeriesFormatError, read_series, score_points, write_scores

    config = _config(args.config)
    try:
        points = read_series(Path(args.input))
    except SeriesFormatError as error:
        print(f"warden: {args.input}: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    scores = score_points(points, series_params(config.detectors.traffic_anomaly))
    write_scores(Path(args.output), points, scores)
    flagged = sum(1 for score in scores if score is not None and score >= args.threshold)
    print(f"scored {len(points):,} points → {args.output}; {flagged:,} at or above {args.threshold}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.write:
        for path in write_schemas():
            print(path)
        return 0
    names = [args.name] if args.name else list(CONTRACTS)
    for name in names:
        sys.stdout.write(schema_text(name))
    return 0


def _add_simulation_options(parser: argparse.ArgumentParser, accounts: int, hours: float) -> None:
    parser.add_argument("--accounts", type=int, default=accounts, help="accounts to simulate")
    parser.add_argument("--hours", type=float, default=hours, help="span of event time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", help="RFC 3339 start of the span (default 2026-01-05T00:00:00Z)")
    parser.add_argument("--scenarios-per-kind", type=int, default=3, help="injected scenarios of each kind")
    parser.add_argument("--hard", action="store_true",
                        help="also inject the harder variants: slow rotating crawlers, sharing through "
                        "residential proxies, ramping surges")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warden", description="Abuse and prohibited-use detection for an AI API")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="simulate, replay and score against the truth; no broker needed")
    _add_simulation_options(demo, accounts=200, hours=6)
    demo.add_argument("--config", help="YAML config (default: built-in defaults)")
    demo.add_argument("--keep", metavar="DIR", help="keep the simulated and produced files here")
    demo.set_defaults(handler=cmd_demo)

    replay = commands.add_parser("replay", help="run the whole pipeline over a JSONL(.gz) file")
    replay.add_argument("input", help="telemetry JSONL or JSONL.gz")
    replay.add_argument("--actions-out", required=True)
    replay.add_argument("--findings-out", required=True)
    replay.add_argument("--dlq-out", help="dead letters (default: dead-letters.jsonl beside --actions-out)")
    replay.add_argument("--config", help="YAML config (default: built-in defaults)")
    replay.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")
    replay.add_argument("--metrics-out", metavar="FILE", help="write the Prometheus text exposition here at the end")
    replay.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port while replaying")
    replay.add_argument("--reversals", metavar="FILE", help="lifted actions (ActionReversal JSONL) to honour")
    replay.set_defaults(handler=cmd_replay)

    backtest = commands.add_parser("backtest", help="replay one file under two configs; print what B changes")
    backtest.add_argument("input", help="telemetry JSONL or JSONL.gz")
    backtest.add_argument("--config-a", help="the baseline config (default: built-in defaults)")
    backtest.add_argument("--config-b", help="the candidate config (default: built-in defaults)")
    backtest.add_argument("--reversals", metavar="FILE", help="lifted actions (ActionReversal JSONL), for both")
    backtest.add_argument("--examples", type=int, default=3, help="examples shown per detector and kind")
    backtest.set_defaults(handler=cmd_backtest)

    simulate = commands.add_parser("simulate", help="write synthetic telemetry with labelled abuse scenarios")
    _add_simulation_options(simulate, accounts=200, hours=6)
    simulate.add_argument("--out", required=True, help="events JSONL (.gz to compress)")
    simulate.add_argument("--truth", required=True, help="scenario truth JSONL")
    simulate.set_defaults(handler=cmd_simulate)

    evaluation = commands.add_parser("evaluate", help="precision, recall and time to detect per scenario kind")
    evaluation.add_argument("--truth", required=True)
    evaluation.add_argument("--findings", required=True)
    evaluation.add_argument("--grace-s", type=int, default=900, help="how long after a scenario a finding counts")
    evaluation.set_defaults(handler=cmd_evaluate)

    run = commands.add_parser("run", help="run a consumer-group member on Kafka (exactly-once)")
    run.add_argument("--bootstrap-servers", help="HOST:PORT[,HOST:PORT] (default from the config)")
    run.add_argument("--config", help="YAML config (default: built-in defaults)")
    run.add_argument("--group-id", help="consumer group (default from the config)")
    run.add_argument("--instance-id", help="stable id of this worker, e.g. the pod name (default: hostname); "
                     "a restart with the same id fences the old process's open transaction")
    run.add_argument("--metrics-port", type=int, help="port for /metrics and /healthz (default from the config)")
    run.set_defaults(handler=cmd_run)

    score_series = commands.add_parser(
        "score-series", help="anomaly scores (0..1) for a timestamp,value CSV with the traffic detector's model"
    )
    score_series.add_argument("input", help="CSV of timestamp,value (or TimeStamp,Value,Label; the label is ignored)")
    score_series.add_argument("--output", required=True, help="CSV of timestamp,value,anomaly_score")
    score_series.add_argument("--config", help="YAML config (default: built-in defaults)")
    score_series.add_argument("--threshold", type=float, default=0.5, help="score counted as an alarm in the summary")
    score_series.set_defaults(handler=cmd_score_series)

    schema = commands.add_parser("schema", help="print the JSON Schemas of the contracts")
    schema.add_argument("name", nargs="?", choices=sorted(CONTRACTS))
    schema.add_argument("--write", action="store_true", help="rewrite models/schemas/ from the models")
    schema.set_defaults(handler=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
