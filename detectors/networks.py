"""Network prefixes of client addresses, the unit in which sharing and crawling are counted."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=65_536)
def subnet_of(ip: str) -> str:
    """The /24 of an IPv4 address or the /48 of an IPv6 one: roughly one site (a household, an office)."""
    if ":" not in ip:
        parts = ip.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"
        return f"unparsed:{ip}"
    try:
        address = ipaddress.IPv6Address(ip.split("%", 1)[0])
    except ValueError:
        return f"unparsed:{ip}"
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))
