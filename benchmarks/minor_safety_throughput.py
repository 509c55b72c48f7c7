"""What the minor-safety detector costs the pipeline: ``warden replay`` events/s with 20% of events
carrying prompts, with and without the detector, in the same process; and the scorer alone, per batch
against one prompt at a time.

Every prompt is made unique (``write_workload(distinct_prompts=True)``) so that no figure leans on
repeated text: the score cache never hits here.

    .venv/bin/python -m benchmarks.minor_safety_throughput [--accounts 150] [--hours 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.workload import write_workload
from detectors.minor_safety.model import load_model
from detectors.minor_safety.scoring import PromptScorer
from models.config import MinorSafetyConfig, WardenConfig
from streams.cli import replay_file
from streams.records import Channel


def _replay_rate(config: WardenConfig, events: Path, count: int, out: Path, repeats: int) -> float:
    """Best of ``repeats`` full replays, in events/s (the best run is the least disturbed by the machine)."""
    outputs = {Channel.ACTIONS: out / "actions.jsonl", Channel.FINDINGS: out / "findings.jsonl"}
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        replay_file(config, events, outputs)
        best = min(best, time.perf_counter() - started)
    return count / best


def _scorer_rates(prompts: list[str], batch: int) -> tuple[float, float]:
    """(prompts/s scored ``batch`` at a time, prompts/s scored one by one)."""
    scorer = PromptScorer(MinorSafetyConfig(score_cache_size=0), load_model())
    started = time.perf_counter()
    for start in range(0, len(prompts), batch):
        scorer.score_batch(prompts[start : start + batch])
    batched = len(prompts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for prompt in prompts:
        scorer.score(prompt)
    single = len(prompts) / (time.perf_counter() - started)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=150)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_model()  # loaded once per process; keep the one-off load out of the timed runs
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        events = directory / "events.jsonl"
        count = write_workload(events, args.accounts, args.hours, prompt_share=0.2, distinct_prompts=True)
        prompts = [row["prompt"] for row in map(orjson.loads, events.read_bytes().splitlines()) if row.get("prompt")]
        with_detector = WardenConfig()
        without = WardenConfig.model_validate({"detectors": {"minor_safety": {"enabled": False}}})
        base_rate = _replay_rate(without, events, count, directory, args.repeats)
        full_rate = _replay_rate(with_detector, events, count, directory, args.repeats)
        batch = with_detector.pipeline.batch_size
        batched, single = _scorer_rates(prompts[:20_000], batch)
    print(f"events: {count:,}, with a prompt: {len(prompts):,} ({len(prompts) / count:.1%})")
    print(f"replay without minor_safety: {base_rate:,.0f} events/s")
    print(f"replay with minor_safety:    {full_rate:,.0f} events/s  (ratio {full_rate / base_rate:.2f})")
    print(f"scorer alone: {batched:,.0f} prompts/s in batches of {batch}, {single:,.0f} prompts/s one at a time")


if __name__ == "__main__":
    main()
