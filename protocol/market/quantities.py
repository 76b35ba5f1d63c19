"""Human-friendly quantities in job spec files: sizes, durations, CUDA versions, compute capability.

Each parser takes the raw value read from TOML or JSON and the field's path, and returns an int
(or a pair of ints) or raises :class:`~protocol.market.errors.JobSpecError` naming the field.
Integers are taken as they are (bytes, seconds, NVML's CUDA version number); strings carry a unit.
No floats: ``"1.5 GiB"`` is read as an exact decimal and must come to a whole number of bytes.
"""

from __future__ import annotations

import re

from protocol.market.errors import JobSpecError

INT63_MAX = 2**63 - 1

SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: More digits than any int63 quantity needs; longer numbers are refused before arithmetic.
_MAX_DIGITS = 40

_QUANTITY = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*")
_VERSION = re.compile(r"\s*(?P<major>[0-9]{1,3})\.(?P<minor>[0-9]{1,2})\s*")


def fail(path: str, message: str) -> JobSpecError:
    """The error for field ``path``: ``"resources.gpu_count: must be between 1 and 64"``."""
    return JobSpecError(f"{path}: {message}")


def plain_int(value: object, path: str) -> int:
    """An integer that is not a bool (TOML and JSON have no other way to spell one)."""
    if type(value) is not int:
        raise fail(path, f"must be an integer, not {_describe(value)}")
    return value


def _with_unit(value: object, path: str, units: dict[str, int], default_unit: str, what: str) -> int:
    if type(value) is int:
        return value
    if type(value) is not str:
        raise fail(path, f"must be an integer or a string such as {what}, not {_describe(value)}")
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise fail(path, f"not a quantity: {value!r} (expected e.g. {what})")
    unit = match["unit"] or default_unit
    if unit not in units:
        raise fail(path, f"unknown unit {unit!r} in {value!r}; one of {', '.join(units)}")
    number: str = match["number"]
    whole, _, fraction = number.partition(".")
    if len(whole) + len(fraction) > _MAX_DIGITS:
        raise fail(path, f"{value[:60]!r} has more than {_MAX_DIGITS} digits")
    # Exact integer arithmetic: value = digits / 10^len(fraction), times the unit.
    scaled = int(whole + fraction) * units[unit]
    scale: int = 10 ** len(fraction)
    result, remainder = divmod(scaled, scale)
    if remainder:
        raise fail(path, f"{value!r} is not a whole number of {default_unit}")
    if result > INT63_MAX:
        raise fail(path, f"{value!r} is too large")
    return result


def parse_size(value: object, path: str) -> int:
    """Bytes: an integer, or ``"16 GiB"``, ``"512MiB"``, ``"1.5 GB"``, ``"4096 B"``."""
    return _with_unit(value, path, SIZE_UNITS, "B", '"16 GiB"')


def parse_duration(value: object, path: str) -> int:
    """Seconds: an integer, or ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``."""
    return _with_unit(value, path, DURATION_UNITS, "s", '"15m"')


def parse_cuda_version(value: object, path: str) -> int:
    """NVML's form ``major * 1000 + minor * 10``: an integer such as 12040, or ``"12.4"``."""
    if type(value) is int:
        return value
    if type(value) is not str:
        raise fail(path, f'must be a version such as "12.4" or 12040, not {_describe(value)}')
    match = _VERSION.fullmatch(value)
    if match is None:
        raise fail(path, f'not a CUDA version: {value!r} (expected e.g. "12.4")')
    return int(match["major"]) * 1000 + int(match["minor"]) * 10


def parse_compute_capability(value: object, path: str) -> tuple[int, int]:
    """``"8.6"`` -> ``(8, 6)``; ``""`` -> ``(0, 0)``, meaning no requirement."""
    if type(value) is not str:
        raise fail(path, f'must be a string such as "8.6", not {_describe(value)}')
    if not value.strip():
        return (0, 0)
    match = _VERSION.fullmatch(value)
    if match is None:
        raise fail(path, f'not a compute capability: {value!r} (expected e.g. "8.6")')
    return (int(match["major"]), int(match["minor"]))


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, float):
        return f"the number {value!r} (fractions are not allowed)"
    return f"a {type(value).__name__}"
