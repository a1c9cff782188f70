"""Sizes and rates written by people: ``8MiB``, ``1.5 MB``, ``10M``, ``2MB/s``, ``20mbit``.

One convention everywhere (CLI flags, scenario files): a bare ``K``/``M``/``G``/``T`` and
``KiB``/``MiB``/``GiB``/``TiB`` are binary (as curl's ``--limit-rate 1M``); ``KB``/``MB``/
``GB``/``TB`` are decimal (SI); ``kbit``/``mbit``/``gbit`` are decimal bits (link speeds,
as tc writes them). A trailing ``/s`` is allowed.
"""

from __future__ import annotations

import math
import re

from hubswarm.errors import ConfigError

__all__ = ["parse_quantity"]

_BYTES = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_BITS = {"bit": 1 / 8, "kbit": 1000 / 8, "mbit": 1000**2 / 8, "gbit": 1000**3 / 8}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([a-zA-Z]*)\s*(/s)?\s*$")


def parse_quantity(text: str | int | float, *, rate: bool = False) -> float:
    """Bytes (or bytes/s with ``rate``) from a number with an optional unit.

    Bit units are accepted only for rates.

    Raises:
        ConfigError: not a number with a known unit, negative, or not finite.
    """
    if isinstance(text, bool):
        raise ConfigError(f"not a size: {text!r}")
    if isinstance(text, int | float):
        number, unit = float(text), ""
    else:
        m = _QUANTITY.match(text)
        if m is None:
            raise ConfigError(f"not a size: {text!r} (examples: 4096, 8MiB, 1.5MB, 20mbit)")
        number, unit = float(m.group(1)), m.group(2).lower()
    if unit in _BYTES:
        value = number * _BYTES[unit]
    elif rate and unit in _BITS:
        value = number * _BITS[unit]
    else:
        kind = "rate" if rate else "size"
        raise ConfigError(f"unknown unit {unit!r} in {kind} {text!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{text!r} must be a finite, non-negative amount")
    return value
