"""Benchmark workloads: simulated telemetry with a fixed share of events carrying prompts."""

from __future__ import annotations

from pathlib import Path

import orjson

from streams.simulator import SimulationSpec, simulate

_DIGITS_AS_LETTERS = str.maketrans("0123456789", "abcdefghij")


def write_workload(
    path: Path, accounts: int, hours: float, prompt_share: float = 0.2, seed: int = 7, distinct_prompts: bool = False
) -> int:
    """Simulated telemetry where exactly ``prompt_share`` of events carry a prompt (the issue's 20%).

    The simulator puts a prompt on every generation call (~36% of calls); prompts are removed from a
    deterministic subset of them, so the abuse scenarios and the call mix stay as simulated. The simulator
    draws prompts from a few thousand phrasings, so most recur; ``distinct_prompts`` makes every one unique
    (", variant" and the prompt's number spelt in letters, so no digits change how it is read), for figures
    that do not lean on the minor-safety score cache.
    """
    events, _ = simulate(SimulationSpec(accounts=accounts, duration_s=int(hours * 3600), seed=seed))
    rows = list(events)
    with_prompt = [index for index, row in enumerate(rows) if row.get("prompt")]
    keep = int(prompt_share * len(rows))
    if keep < len(with_prompt):
        stride = len(with_prompt) / (len(with_prompt) - keep)
        for position in range(len(with_prompt) - keep):
            rows[with_prompt[int(position * stride)]]["prompt"] = None
    if distinct_prompts:
        for number, row in enumerate(row for row in rows if row.get("prompt")):
            row["prompt"] = f"{row['prompt']}, variant {str(number).translate(_DIGITS_AS_LETTERS)}"
    with open(path, "wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row))
            handle.write(b"\n")
    return len(rows)
