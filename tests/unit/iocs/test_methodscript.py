"""MethodSCRIPT's encodings (data packages, script numbers) without an instrument."""

from __future__ import annotations

import math

import pytest

from qd_bluesky.iocs._methodscript import (
    MethodScriptError,
    Variable,
    decode_value,
    encode_value,
    format_number,
    format_package,
    parse_number,
    parse_package,
)


def test_a_package_of_the_vendors_format_decodes() -> None:
    # 0x8000000 is zero; 0x7FFFE0C is -500 and 0x80001F4 is +500 (offset 2**27)
    package = parse_package("Pda7FFFE0Cm;ba80001F4n,14,20C\n")
    assert package["da"].value == pytest.approx(-0.5)
    assert package["ba"].value == pytest.approx(500e-9)
    assert package["ba"].status == 0x4 and package["ba"].current_range == 12


@pytest.mark.parametrize("value", [0.0, -0.5, 1.234567, -2.0, 3.99e-6, -4.2e-12, 1e-9, 5.0])
def test_values_round_trip_to_the_resolution_of_their_prefix(value: float) -> None:
    text = encode_value(value)
    assert len(text) == 8
    # the finest prefix that holds the value: the error is below half a unit of 2**-27 of it
    assert decode_value(text) == pytest.approx(value, rel=2**-26, abs=1e-18)


def test_nan_and_bad_fields() -> None:
    assert math.isnan(decode_value("     nan"))
    for bad in ("8000000x", "80000", "G000000m"):
        with pytest.raises(MethodScriptError):
            decode_value(bad)
    with pytest.raises(MethodScriptError, match="not a data package"):
        parse_package("e\n")


def test_format_package_is_what_parse_package_reads() -> None:
    line = format_package([Variable("da", -0.25), Variable("ba", -3.5e-6, 2, 15)])
    assert line.endswith("\n") and line.startswith("Pda")
    package = parse_package(line)
    assert package["da"].value == pytest.approx(-0.25)
    assert package["ba"].value == pytest.approx(-3.5e-6)
    assert (package["ba"].status, package["ba"].current_range) == (2, 15)


@pytest.mark.parametrize(
    ("value", "text"),
    [(-0.5, "-500m"), (1e-7, "100n"), (2.0, "2"), (0.001, "1m"), (-1.7, "-1700m"), (0.0, "0")],
)
def test_script_numbers(value: float, text: str) -> None:
    assert format_number(value) == text
    assert parse_number(text) == pytest.approx(value)


def test_script_number_forms() -> None:
    assert parse_number("1i") == 1 and parse_number("0x1f") == 31 and parse_number("2.5") == 2.5
    with pytest.raises(MethodScriptError, match="not a MethodSCRIPT number"):
        parse_number("fast")
