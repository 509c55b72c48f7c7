"""Verified partners whose findings lead to no action: accounts, API keys, networks and user agents.

Network and user-agent entries match the event that completed the finding. The pipeline hands that
event to the policy, so the IP and user agent never have to be copied into findings or actions:
they are read here and forgotten. Filtering partner traffic before the detectors instead would hide
it from the findings dashboards too, and from the minor-safety detector, which no allowlist may skip.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from models.config import AllowlistEntry, AllowlistKind
from models.finding import Finding
from models.telemetry import TelemetryEvent


@dataclass(frozen=True, slots=True)
class _Compiled:
    entry: AllowlistEntry
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    agent: re.Pattern[str] | None = None


class Allowlist:
    def __init__(self, entries: list[AllowlistEntry]) -> None:
        self._entries = [
            _Compiled(
                entry,
                network=ipaddress.ip_network(entry.value) if entry.kind is AllowlistKind.CIDR else None,
                agent=re.compile(entry.value, re.IGNORECASE) if entry.kind is AllowlistKind.USER_AGENT else None,
            )
            for entry in entries
        ]

    def match(self, finding: Finding, event: TelemetryEvent | None) -> AllowlistEntry | None:
        """The first entry in force at the finding's event time that covers it, if any."""
        address = _address(event.ip) if event is not None else None
        agent = event.user_agent if event is not None else None
        for compiled in self._entries:
            entry = compiled.entry
            if entry.expires_at is not None and finding.ts >= entry.expires_at:
                continue
            if (
                (entry.kind is AllowlistKind.ACCOUNT and entry.value == finding.account_id)
                or (entry.kind is AllowlistKind.API_KEY and entry.value == finding.api_key_id)
                or (compiled.network is not None and address is not None and address in compiled.network)
                or (compiled.agent is not None and agent is not None and compiled.agent.search(agent) is not None)
            ):
                return entry
        return None


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None
