"""Backtest: the same history under two configs, and what the second changes, per detector.

Actions are matched by the finding they rest on (finding ids are deterministic and do not depend
on the policy), so a ladder, shadow or allowlist change shows as actions changed, and a detector
threshold change shows as actions added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.action import EnforcementAction
from models.timestamps import format_timestamp

# What a consumer carries out; ids and policy_version differ by construction and are not compared.
_COMPARED = ("scope", "action", "duration_s", "mode", "requires_review", "preserve_evidence", "api_key_id")


@dataclass
class DetectorDiff:
    added: list[EnforcementAction] = field(default_factory=list)
    removed: list[EnforcementAction] = field(default_factory=list)
    changed: list[tuple[EnforcementAction, EnforcementAction]] = field(default_factory=list)
    unchanged: int = 0


def _by_finding(actions: list[EnforcementAction]) -> dict[str, EnforcementAction]:
    return {action.reasons[0].finding_id: action for action in actions}


def _essence(action: EnforcementAction) -> tuple[object, ...]:
    return tuple(getattr(action, name) for name in _COMPARED)


def compare(before: list[EnforcementAction], after: list[EnforcementAction]) -> dict[str, DetectorDiff]:
    """Per detector: actions only ``after`` has (added), only ``before`` has (removed), and both with a different
    measure (changed)."""
    old, new = _by_finding(before), _by_finding(after)
    diffs: dict[str, DetectorDiff] = {}
    for finding_id in sorted(old.keys() | new.keys()):
        a, b = old.get(finding_id), new.get(finding_id)
        either = a if a is not None else b
        assert either is not None  # the id came from one of the two
        diff = diffs.setdefault(either.reasons[0].detector, DetectorDiff())
        if a is None:
            diff.added.append(either)
        elif b is None:
            diff.removed.append(a)
        elif _essence(a) == _essence(b):
            diff.unchanged += 1
        else:
            diff.changed.append((a, b))
    return dict(sorted(diffs.items()))


def _describe(action: EnforcementAction) -> str:
    duration = f" {action.duration_s}s" if action.duration_s else ""
    review = " review" if action.requires_review else ""
    preserve = " preserve-evidence" if action.preserve_evidence else ""
    flags = f" [{action.mode.value}]{review}{preserve}"
    return f"{action.action.value} {action.scope.value}{duration}{flags}"


def format_backtest(diffs: dict[str, DetectorDiff], examples: int = 3) -> str:
    """A table of counts per detector, then a few examples of each difference."""
    header = f"{'detector':<18} {'added':>7} {'removed':>8} {'changed':>8} {'unchanged':>10}"
    lines = [header, "-" * len(header)]
    for detector, diff in diffs.items():
        lines.append(
            f"{detector:<18} {len(diff.added):>7} {len(diff.removed):>8} {len(diff.changed):>8} {diff.unchanged:>10}"
        )
    if not diffs:
        lines.append("(no actions under either config)")
    for detector, diff in diffs.items():
        for action in diff.added[:examples]:
            lines.append(f"  {detector} + {action.account_id} {format_timestamp(action.ts)}: {_describe(action)}")
        for action in diff.removed[:examples]:
            lines.append(f"  {detector} - {action.account_id} {format_timestamp(action.ts)}: {_describe(action)}")
        for a, b in diff.changed[:examples]:
            lines.append(f"  {detector} ~ {a.account_id} {format_timestamp(a.ts)}: {_describe(a)} → {_describe(b)}")
    return "\n".join(lines)
