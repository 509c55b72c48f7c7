"""Enforcement decides: findings in, actions (restrict, suspend, terminate) out."""

from enforcement.policy import EnforcementPolicy

__all__ = ["EnforcementPolicy"]
