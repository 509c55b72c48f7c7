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

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from detectors.base import Detector, cooling_down, new_store
from detectors.geo import Place, distance_km, open_geolocator
from detectors.networks import subnet_of
from detectors.sketches import SlidingDistinct
from detectors.state import SubjectStore
from models.config import KeySharingConfig, StateConfig
from models.finding import Finding, Severity, SubjectType
from models.telemetry import TelemetryEvent

# The distinct counts each subject keeps; the first three count located uses only.
NETWORKS, ASNS, COUNTRIES, DEVICES, USER_AGENTS = "networks", "asns", "countries", "devices", "user_agents"
DIMENSIONS = (NETWORKS, ASNS, COUNTRIES, DEVICES, USER_AGENTS)
# An event's items, in the order they are counted: user agent, device, then the located network, ASN, country.
# Commonest first: a profile's sketch holds the kinds up to the last one it has seen (see ``SlidingDistinct``).
ITEM_DIMENSIONS = (USER_AGENTS, DEVICES, NETWORKS, ASNS, COUNTRIES)
Items = tuple[str | None, ...]
Recent = tuple[int, tuple[Items, ...]]  # a pane, and the items of its last few distinct events (the latest first)
_RECENT_ITEMS = 3
"""Distinct item tuples remembered per pane: a key's user, or an account's keys, mostly alternate among a few."""
_NOTHING_SEEN: tuple[tuple[str | None, ...], ...] = ((),) * len(ITEM_DIMENSIONS)
_KIND = {dim: kind for kind, dim in enumerate(ITEM_DIMENSIONS)}
"""Each dimension's kind in a profile's ``SlidingDistinct``: its place in ``ITEM_DIMENSIONS``."""


@dataclass(slots=True)
class UsageProfile:
    """One key's or account's recent spread: sketches plus the last located use and recent distant hops."""

    last_seen_ms: int
    distinct: SlidingDistinct | None = None
    """Every dimension's distinct count in one sketch (kinds in ``ITEM_DIMENSIONS`` order), made at the first item."""
    previous: list[Any] | None = None  # [country, latitude, longitude, ts_ms] of the last located use
    switches: tuple[int, ...] = ()  # times of recent hops between distant countries (most profiles: none)
    last_flag_ms: int | None = None
    # Not state but a shortcut, never dumped: the pane the last events fell in and the items of its last
    # few distinct events (a key's user or an account's keys often alternate). Within that pane, one of
    # those items again only repeats what its sketch's current pane holds.
    recent: Recent | None = None

    def dump(self) -> dict[str, Any]:
        return {
            "last_seen_ms": self.last_seen_ms,
            "distinct": None if self.distinct is None else self.distinct.dump(),
            "previous": None if self.previous is None else list(self.previous),
            "switches": list(self.switches),
            "last_flag_ms": self.last_flag_ms,
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> UsageProfile:
        return cls(
            data["last_seen_ms"],
            None if data["distinct"] is None else SlidingDistinct.load(data["distinct"]),
            None if data["previous"] is None else list(data["previous"]),
            tuple(data["switches"]),
            data["last_flag_ms"],
        )


@dataclass(frozen=True, slots=True)
class Site:
    """What an address contributes: its place, whether that is a place at all, and the located items."""

    place: Place
    located: bool
    items: tuple[str | None, str | None, str | None]  # network, "AS<n>", country; all None when not located


class KeySharingDetector(Detector):
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
        self._pane_ms = max(1, config.window_s * 1000 // config.panes)
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
            return Site(place, False, (None, None, None))
        return Site(place, True, (subnet_of(ip), None if place.asn is None else f"AS{place.asn}", place.country))

    def observe(self, event: TelemetryEvent) -> list[Finding]:
        site = self.site(event.ip)
        now = event.ts_ms
        pane = now - now % self._pane_ms
        items: Items = (event.user_agent, event.device_id, *site.items)
        key = self.keys.touch(event.key_subject, now)
        findings = self._assess(key, event, site, pane, items, SubjectType.API_KEY)
        account = self.accounts.touch(event.account_id, now)
        findings += self._assess(account, event, site, pane, items, SubjectType.ACCOUNT)
        return findings

    def _add(self, profile: UsageProfile, pane: int, items: Items, now: int) -> bool:
        """Count the event's items; returns whether any is new to its window."""
        recent = profile.recent
        known = recent[1] if recent is not None and recent[0] == pane else ()
        seen = zip(*known, strict=True) if known else _NOTHING_SEEN  # per dimension, what this pane counted
        changed, sketch = False, profile.distinct
        for kind, (item, counted) in enumerate(zip(items, seen, strict=True)):
            if not item or item in counted:
                continue  # counted in this pane already: it would only repeat
            if sketch is None:
                cfg = self.config
                sketch = profile.distinct = SlidingDistinct(cfg.sketch_precision, self._pane_ms, cfg.panes)
            changed |= sketch.add(item, now, kind)
        # A sketch restored from another window's config has other panes: the shortcut would not hold.
        aligned = sketch is None or sketch.pane_ms == self._pane_ms
        profile.recent = (pane, (items, *known[: _RECENT_ITEMS - 1])) if aligned else None
        return changed

    def _count(self, profile: UsageProfile, dim: str, now: int) -> int:
        sketch = profile.distinct
        return 0 if sketch is None else sketch.count(now, _KIND[dim])

    def _assess(
        self, profile: UsageProfile, event: TelemetryEvent, site: Site, pane: int, items: Items, subject: SubjectType
    ) -> list[Finding]:
        now = event.ts_ms
        if now > profile.last_seen_ms:
            profile.last_seen_ms = now
        recent = profile.recent
        repeat = recent is not None and recent[0] == pane and items in recent[1]
        changed = not repeat and self._add(profile, pane, items, now)
        # The hop's rules come first in a finding's evidence, then the spread's.
        fired: dict[str, dict[str, Any]] = {}
        if site.located:
            place, previous = site.place, profile.previous
            here = [place.country, place.latitude, place.longitude]
            if previous is not None and previous[:3] == here:
                previous[3] = now  # the same place again, the commonest case: only the time moves
            else:
                if previous is not None and subject is SubjectType.API_KEY:
                    fired = self._hop(profile, place, now)
                profile.previous = [*here, now]
        counts = None
        if changed:
            counts = {dim: self._count(profile, dim, now) for dim in DIMENSIONS}
            fired.update(self._spread(counts))
        if not fired or cooling_down(profile.last_flag_ms, now, self.config.cooldown_s):
            return []
        profile.last_flag_ms = now
        if counts is None:
            counts = {dim: self._count(profile, dim, now) for dim in DIMENSIONS}
        return [self._finding(event, subject, fired, counts)]

    def _hop(self, profile: UsageProfile, place: Place, now: int) -> dict[str, dict[str, Any]]:
        """Impossible travel and back-and-forth use, from the last located use to this one."""
        cfg, previous = self.config, profile.previous
        if previous is None or previous[0] == place.country:
            return {}
        before = Place(place.kind, previous[0], previous[1], previous[2])
        km = distance_km(before, place)
        if km is None or km < cfg.min_travel_km:
            return {}
        horizon = now - cfg.concurrent_window_s * 1000
        recent = [t for t in profile.switches if t >= horizon]
        profile.switches = (*recent[len(recent) - cfg.min_switches + 1 :], now)
        minutes = max(now - previous[3], 1) / 60_000
        speed = km / (minutes / 60)
        hop = {"from": previous[0], "to": place.country, "km": round(km), "minutes": round(minutes, 1)}
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
