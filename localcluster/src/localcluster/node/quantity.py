"""Kubernetes resource quantities ("500m", "2Gi", "1e3") as exact fractions."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")


def parse_quantity(value: str | int | float) -> Fraction:
    if isinstance(value, int | float):
        return Fraction(value)
    m = _RE.match(value.strip())
    if not m:
        raise ValueError(f"invalid quantity {value!r}")
    number, suffix = m.groups()
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return Fraction(number) * Fraction(10) ** int(suffix[1:])
    if suffix not in _SUFFIXES:
        raise ValueError(f"invalid quantity suffix in {value!r}")
    return Fraction(number) * _SUFFIXES[suffix]


def divide_ceil(value: str | int | float, divisor: str | int | float | None) -> str:
    """What the downward API exposes for a resourceFieldRef: ceil(value / divisor)."""
    d = parse_quantity(divisor) if divisor not in (None, "") else Fraction(1)
    if d == 0:
        d = Fraction(1)
    return str(math.ceil(parse_quantity(value) / d))
