"""Warden's contracts: the records that cross a boundary, and the config."""

from models.action import ActionKind, ActionMode, ActionReason, ActionScope, EnforcementAction
from models.config import ConfigError, WardenConfig, load_config, parse_config
from models.finding import Finding, Severity, SubjectType, stable_id
from models.telemetry import TelemetryEvent
from models.truth import ScenarioKind, ScenarioTruth

__all__ = [
    "ActionKind",
    "ActionMode",
    "ActionReason",
    "ActionScope",
    "ConfigError",
    "EnforcementAction",
    "Finding",
    "ScenarioKind",
    "ScenarioTruth",
    "Severity",
    "SubjectType",
    "TelemetryEvent",
    "WardenConfig",
    "load_config",
    "parse_config",
    "stable_id",
]
