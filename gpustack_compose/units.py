"""Byte arithmetic and human-readable sizes.

All memory inside the planner is integer bytes; GiB (2**30) is what vLLM prints
in its logs ("Model loading took 27.57 GiB"), so reports use GiB too.
"""

from __future__ import annotations

import math
import re

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE_UNITS = {"GiB": GiB, "MiB": MiB, "TiB": 1024 * GiB, "GB": 10**9, "MB": 10**6, "TB": 10**12}
SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GiB|MiB|TiB|GB|MB|TB)\s*$")


def gib(value: float) -> int:
    """Bytes in ``value`` GiB, rounded to a whole byte."""
    return round(value * GiB)


def to_gib(size_bytes: int | float) -> float:
    return size_bytes / GiB


def fmt_gib(size_bytes: int | float, digits: int = 2) -> str:
    """``27.57 GiB``: the way vLLM prints sizes in its startup log."""
    return f"{size_bytes / GiB:.{digits}f} GiB"


def parse_size(text: str) -> int | None:
    """Bytes in a size like ``40GiB`` or ``500 MB``; None when it is not a size."""
    match = SIZE_PATTERN.fullmatch(text)
    if match is None:
        return None
    return round(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def floor_to(value: float, step: float) -> float:
    """Largest multiple of ``step`` not above ``value`` (robust to float noise)."""
    return math.floor(value / step + 1e-9) * step


def ceil_to(value: float, step: float) -> float:
    """Smallest multiple of ``step`` not below ``value`` (robust to float noise)."""
    return math.ceil(value / step - 1e-9) * step


def fmt_fraction(fraction: float) -> str:
    """A fraction as vLLM's flag takes it: at most 4 decimals, no trailing zeros."""
    text = f"{fraction:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
