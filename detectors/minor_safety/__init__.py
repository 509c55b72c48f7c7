"""Minor safety (clause 8.2.6): a lexicon and a learned scorer over prompts, with account-level escalation."""

from detectors.minor_safety.detector import MinorSafetyDetector

__all__ = ["MinorSafetyDetector"]
