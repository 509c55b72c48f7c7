"""Key and account sharing (clauses 3.8, 10.3): one key or account used by several parties.

Per API key and per account, over a sliding event-time window, HyperLogLog sketches count the
distinct networks (/24, /48), ASNs, countries, devices and user agents. Per key, consecutive uses
are also compared in place and time: a hop faster than a flight is impossible travel, and repeated
hops back and forth between distant countries are concurrent use. Accounts get the spread rules
only, since an account's several keys may legitimately run in several places.

Addresses that say nothing about where a person is (carrier-grade NAT, private ranges, mobile
carriers, cloud egress) never count as a place, network or country, so mobile users, corporate
NATs and customers' cloud servers do not look like sharing by themselves.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from detectors.base import SteppedDetector, cooling_down, new_store
from detectors.geo import Place, haversine_km, open_geolocator
from detectors.native import SharingWindow, UsageProfile
from detectors.networks import subnet_of
from detectors.state import SubjectStore
from models.config import KeySharingConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent

# The distinct counts each subject keeps; the first three count located uses only.
NETWORKS, ASNS, COUNTRIES, DEVICES, USER_AGENTS = "networks", "asns", "countries", "devices", "user_agents"
DIMENSIONS = (NETWORKS, ASNS, COUNTRIES, DEVICES, USER_AGENTS)
# An event's items, in the order they are counted: user agent, device, then the located network, ASN, country.
# Commonest first: a profile's sketch holds the kinds up to the last one it has seen (``native/src/sketches.rs``).
ITEM_DIMENSIONS = (USER_AGENTS, DEVICES, NETWORKS, ASNS, COUNTRIES)
Here = tuple[str, float, float | None]
"""Where a located use is: its country, latitude and longitude."""
_KIND = {dim: kind for kind, dim in enumerate(ITEM_DIMENSIONS)}
"""Each dimension's kind in a profile's sketch: its place in ``ITEM_DIMENSIONS``."""


class Site(NamedTuple):
    """What an address contributes: the located items and where it is, or nothing when it is no place. A tuple:
    the window's compiled step reads it by index."""

    items: tuple[str | None, str | None, str | None]  # network, "AS<n>", country; all None when not located
    here: Here | None  # country, latitude, longitude


class KeySharingDetector(SteppedDetector):
    """Flags spread (countries, networks+ASNs, devices), concurrent distant use and impossible travel."""

    name = "key_sharing"
    model_version = "key-sharing-hll-geo-1.0"
    clauses = ("3.8", "10.3")

    def __init__(self, config: KeySharingConfig, state: StateConfig) -> None:
        self.config = config
        self.keys: SubjectStore[UsageProfile] = new_store(UsageProfile, UsageProfile.load, state)
        self.accounts: SubjectStore[UsageProfile] = new_store(UsageProfile, UsageProfile.load, state)
        self.geo = open_geolocator(config.geoip_city_db, config.geoip_asn_db)
        self._placeless_asns = frozenset(config.carrier_asns) | frozenset(config.cloud_asns)
        pane_ms = max(1, config.window_s * 1000 // config.panes)
        self.window = SharingWindow(config.sketch_precision, pane_ms, config.panes)
        # Clients reuse a few addresses for thousands of calls: derive each address's items once.
        self.site = lru_cache(maxsize=65_536)(self._site)

    def stores(self) -> dict[str, SubjectStore[Any]]:
        return {"keys": self.keys, "accounts": self.accounts}

    def is_place(self, place: Place) -> bool:
        """Whether this address tells where a person is (not CGNAT, a carrier, a cloud or unknown)."""
        return place.located and place.asn not in self._placeless_asns

    def _site(self, ip: str) -> Site:
        place = self.geo.locate(ip)
        if not self.is_place(place):
            return Site((None, None, None), None)
        assert place.country is not None and place.latitude is not None  # as ``is_place`` found them
        asn = None if place.asn is None else f"AS{place.asn}"
        return Site((subnet_of(ip), asn, place.country), (place.country, place.latitude, place.longitude))

    def step(self, events: list[TelemetryEvent], start: int) -> tuple[Any, ...] | None:
        return self.window.step(self.keys, self.accounts, events, start, self.site)

    def judge(
        self,
        event: TelemetryEvent,
        key: UsageProfile,
        account: UsageProfile,
        key_changed: bool,
        hop_from: list[Any] | None,
        account_changed: bool,
    ) -> list[Finding]:
        here = self.site(event.ip).here
        # The hop's rules come first in a finding's evidence, then the spread's.
        fired = {} if hop_from is None or here is None else self._hop(key, hop_from, here, event.ts_ms)
        findings = self._assess(key, event, fired, key_changed, SubjectType.API_KEY)
        return findings + self._assess(account, event, {}, account_changed, SubjectType.ACCOUNT)

    def _assess(
        self,
        profile: UsageProfile,
        event: TelemetryEvent,
        fired: dict[str, dict[str, Any]],
        changed: bool,
        subject: SubjectType,
    ) -> list[Finding]:
        """The spread rules when an item was new to the profile's window, beside the hop rules already fired."""
        now = event.ts_ms
        counts = None
        if changed:
            counts = self._counts(profile, now)
            fired.update(self._spread(counts))
        if not fired or cooling_down(profile.last_flag_ms, now, self.config.cooldown_s):
            return []
        profile.last_flag_ms = now
        return [self._finding(event, subject, fired, counts or self._counts(profile, now))]

    @staticmethod
    def _counts(profile: UsageProfile, now: int) -> dict[str, int]:
        return {dim: profile.count(now, _KIND[dim]) for dim in DIMENSIONS}

    def _hop(self, profile: UsageProfile, before: list[Any], here: Here, now: int) -> dict[str, dict[str, Any]]:
        """Impossible travel and back-and-forth use, from the last located use (in another country) to this one."""
        cfg = self.config
        country, latitude, longitude, then = before
        if longitude is None or here[2] is None:
            return {}
        km = haversine_km(latitude, longitude, here[1], here[2])
        if km < cfg.min_travel_km:
            return {}
        horizon = now - cfg.concurrent_window_s * 1000
        recent = [t for t in profile.switches if t >= horizon]
        profile.switches = [*recent[len(recent) - cfg.min_switches + 1 :], now]
        minutes = max(now - then, 1) / 60_000
        speed = km / (minutes / 60)
        hop = {"from": country, "to": here[0], "km": round(km), "minutes": round(minutes, 1)}
        fired: dict[str, dict[str, Any]] = {}
        if speed > cfg.max_speed_kmh:
            fired["impossible_travel"] = {**hop, "km_per_h": round(speed)}
        if len(profile.switches) >= cfg.min_switches:
            fired["concurrent_use"] = {
                "hops": len(profile.switches),
                "within_s": round((now - profile.switches[0]) / 1000),
                "last_hop": hop,
            }
        return fired

    def _spread(self, counts: dict[str, int]) -> dict[str, dict[str, Any]]:
        cfg = self.config
        fired: dict[str, dict[str, Any]] = {}
        if counts[COUNTRIES] > cfg.max_countries:
            fired["country_spread"] = {"countries": counts[COUNTRIES], "max": cfg.max_countries}
        if counts[NETWORKS] > cfg.max_networks and counts[ASNS] > cfg.max_asns:
            fired["network_spread"] = {"networks": counts[NETWORKS], "asns": counts[ASNS]}
        crowd = counts[DEVICES] > cfg.max_devices or counts[USER_AGENTS] > cfg.max_user_agents
        # Many devices behind one country's networks is a corporate NAT or a busy app, not sharing.
        if crowd and counts[COUNTRIES] >= 2:
            fired["device_crowd"] = {
                "devices": counts[DEVICES],
                "user_agents": counts[USER_AGENTS],
                "countries": counts[COUNTRIES],
                "asns": counts[ASNS],
            }
        return fired

    def _finding(
        self, event: TelemetryEvent, subject: SubjectType, fired: dict[str, dict[str, Any]], counts: dict[str, int]
    ) -> Finding:
        cfg = self.config
        rules = sorted(fired)
        severity = Severity.HIGH if len(rules) >= 2 or "concurrent_use" in fired else Severity.MEDIUM
        who = "API key" if subject is SubjectType.API_KEY else "Account"
        return self.finding(
            event,
            subject_type=subject,
            subject_id=event.api_key_id if subject is SubjectType.API_KEY else event.account_id,
            window_start_ms=event.ts_ms - cfg.window_s * 1000,
            score=1.0 - 0.5 ** (len(rules) + 1),
            severity=severity,
            summary=f"{who} used by several parties ({'; '.join(_describe(r, fired[r]) for r in rules)}): "
            "key or account shared (3.8, 10.3).",
            evidence={
                "rules": fired,
                f"distinct_in_{cfg.window_s}s": counts,
                "event_ids": [event.event_id],
            },
        )


def _describe(rule: str, detail: dict[str, Any]) -> str:
    if rule == "impossible_travel":
        return (
            f"{detail['from']}→{detail['to']} {detail['km']:,} km in {detail['minutes']} min "
            f"({detail['km_per_h']:,} km/h)"
        )
    if rule == "concurrent_use":
        return f"{detail['hops']} hops between distant countries in {detail['within_s']} s"
    if rule == "country_spread":
        return f"{detail['countries']} countries"
    if rule == "network_spread":
        return f"{detail['networks']} networks in {detail['asns']} ASNs"
    return f"{detail['devices']} devices and {detail['user_agents']} user agents across {detail['countries']} countries"
