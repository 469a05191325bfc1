"""PCI addresses (``domain:bus:device.function``) as numbers, in the order the bus numbers functions."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


def function_number(address: str) -> int | None:
    """``domain << 16 | bus << 8 | device << 3 | function``: within a domain (the low 16 bits) the
    function's PCIe routing ID, which SR-IOV's First VF Offset and VF Stride count in. None for
    anything that is not a PCI address."""
    m = _ADDRESS.match(address)
    if m is None:
        return None
    domain, bus, device, function = (int(g, 16) for g in m.groups())
    return domain << 16 | bus << 8 | device << 3 | function
