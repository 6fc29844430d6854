"""MethodSCRIPT's text encodings, shared by the EmStat driver and its emulator.

PalmSens instruments (EmStat Pico, EmStat4) run MethodSCRIPT: a script is sent as lines after
an ``e`` line and ends with an empty line. Numbers in a script carry an SI prefix (``500m``,
``-1``, ``100n``, ``1i`` for an integer). Measured values come back in data packages, one
line each: ``P`` then variables separated by ``;``. A variable is its two-letter type (``da``
applied potential, ``ba`` WE current, ...), seven hex digits of a signed value offset by
2**27, one SI-prefix character, and optional metadata after commas (``1X`` status flags,
``2XX`` current range index). Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: SI prefix characters of MethodSCRIPT and their factors (``i``: an integer, factor 1).
SI_PREFIXES = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "i": 1.0,
}
#: Offset of the seven-hex-digit values of a data package (they are unsigned on the wire).
VALUE_OFFSET = 1 << 27
#: Variable types used here.
SET_POTENTIAL = "da"
WE_CURRENT = "ba"
#: Metadata status bit of an overloaded current reading.
STATUS_OVERLOAD = 0x2

#: Prefixes from the finest up, as an encoder picks them (the finest that holds the value).
_ENCODE_ORDER = ("a", "f", "p", "n", "u", "m", " ", "k", "M", "G", "T", "P", "E")


class MethodScriptError(ValueError):
    """A malformed MethodSCRIPT number or data package."""


def encode_value(value: float) -> str:
    """A value as a package field: seven hex digits and the SI prefix of best resolution."""
    if math.isnan(value):
        return "     nan"
    for prefix in _ENCODE_ORDER:
        mantissa = round(value / SI_PREFIXES[prefix])
        if abs(mantissa) < VALUE_OFFSET:
            return f"{mantissa + VALUE_OFFSET:07X}{prefix}"
    raise MethodScriptError(f"{value!r} is too large for a MethodSCRIPT package")


def decode_value(text: str) -> float:
    """The value of a package field (seven hex digits and an SI prefix)."""
    if text == "     nan":
        return math.nan
    if len(text) != 8 or text[7] not in SI_PREFIXES:
        raise MethodScriptError(f"not a MethodSCRIPT value: {text!r}")
    try:
        mantissa = int(text[:7], 16) - VALUE_OFFSET
    except ValueError:
        raise MethodScriptError(f"not a MethodSCRIPT value: {text!r}") from None
    return mantissa * SI_PREFIXES[text[7]]


@dataclass(frozen=True)
class Variable:
    """One variable of a data package."""

    type: str
    value: float
    #: Status flags (metadata ``1X``), 0 when absent.
    status: int = 0
    #: Current range index (metadata ``2XX``), None when absent.
    current_range: int | None = None


@dataclass(frozen=True)
class Package:
    """One data package: its variables, by type."""

    variables: tuple[Variable, ...] = field(default_factory=tuple)

    def __getitem__(self, var_type: str) -> Variable:
        for var in self.variables:
            if var.type == var_type:
                return var
        raise KeyError(var_type)


def format_package(variables: list[Variable]) -> str:
    """The line (with ``\\n``) the instrument sends for ``variables``."""
    parts = []
    for var in variables:
        meta = ""
        if var.current_range is not None:
            meta = f",1{var.status:X},2{var.current_range:02X}"
        parts.append(f"{var.type}{encode_value(var.value)}{meta}")
    return "P" + ";".join(parts) + "\n"


def parse_package(line: str) -> Package:
    """The variables of a data package line (``P...``)."""
    text = line.rstrip("\r\n")
    if not text.startswith("P"):
        raise MethodScriptError(f"not a data package: {line!r}")
    variables = []
    for item in text[1:].split(";"):
        fields = item.split(",")
        head = fields[0]
        if len(head) != 10:
            raise MethodScriptError(f"bad variable {item!r} in the package {text!r}")
        status, cr = 0, None
        for meta in fields[1:]:
            if len(meta) == 2 and meta[0] == "1":
                status = int(meta[1], 16)
            elif len(meta) == 3 and meta[0] == "2":
                cr = int(meta[1:], 16)
        variables.append(Variable(head[:2], decode_value(head[2:]), status, cr))
    return Package(tuple(variables))


def format_number(value: float) -> str:
    """A script argument: an integer with the coarsest SI prefix that represents ``value``
    (to 1 pico-unit), e.g. ``-0.5`` -> ``-500m``, ``1e-7`` -> ``100n``."""
    if value == 0:
        return "0"
    for prefix in (" ", "m", "u", "n", "p"):
        scaled = value / SI_PREFIXES[prefix]
        whole = round(scaled)
        if whole != 0 and abs(scaled - whole) < 1e-9 * abs(scaled) and abs(whole) < 2**31:
            return f"{whole}{prefix.strip()}"
    return f"{round(value / 1e-12)}p"


def parse_number(token: str) -> float:
    """A script argument as a float: ``500m``, ``-1``, ``1i``, ``0x1f``, ``2.5``."""
    token = token.strip()
    try:
        if token.lower().startswith(("0x", "-0x")):
            return float(int(token, 16))
        if token and token[-1] in SI_PREFIXES and not token[-1].isdigit():
            return float(token[:-1]) * SI_PREFIXES[token[-1]]
        return float(token)
    except ValueError:
        raise MethodScriptError(f"not a MethodSCRIPT number: {token!r}") from None
