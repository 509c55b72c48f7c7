"""The JSON Schemas of the contracts, as committed in ``models/schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from models.action import EnforcementAction
from models.config import WardenConfig
from models.finding import Finding
from models.telemetry import TelemetryEvent

SCHEMA_DIR = Path(__file__).parent / "schemas"

# Inputs are described as accepted (validation); outputs as written (serialization).
CONTRACTS: dict[str, tuple[type[BaseModel], str]] = {
    "telemetry_event": (TelemetryEvent, "validation"),
    "finding": (Finding, "serialization"),
    "enforcement_action": (EnforcementAction, "serialization"),
    "config": (WardenConfig, "validation"),
}


def schema_of(name: str) -> dict[str, Any]:
    model, mode = CONTRACTS[name]
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    schema["$id"] = f"https://warden.dev/schemas/{name}.v1.json"
    return schema


def schema_text(name: str) -> str:
    return json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = directory / f"{name}.json"
        path.write_text(schema_text(name), encoding="utf-8")
        written.append(path)
    return written
