from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramguard import InvalidArgument, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512 MiB", 512 * 2**20),
        ("6GiB", 6 * 2**30),
        ("1.5 GB", 1_500_000_000),
        ("1.5 kib", 1536),
        ("0 B", 0),
        ("  42  ", 42),
        ("10mb", 10_000_000),
        ("2 TiB", 2 * 2**40),
        ("3 bytes", 3),
        (".5 KiB", 512),
        (1234, 1234),
    ],
)
def test_parse_size_accepts_decimal_and_binary_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12 XB", "-1", -1, "", None, "GiB", "1..5 MiB", True, 1.5, "inf GB", "1 e3"])
def test_parse_size_rejects_bad_input_listing_the_units(bad: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_size(bad, argument="max_peak")  # type: ignore[arg-type]
    message = str(info.value)
    assert "max_peak" in message
    assert "MiB" in message and "GB" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1024, "1.00 KiB"),
        (64 * 2**20, "64.0 MiB"),
        (int(1.5 * 2**30), "1.50 GiB"),
        (None, "n/a"),
        (-2048, "-2.00 KiB"),
    ],
)
def test_format_size_is_human_readable(nbytes: int | None, text: str) -> None:
    assert format_size(nbytes) == text


def test_format_size_signed() -> None:
    assert format_size(2048, signed=True) == "+2.00 KiB"
    assert format_size(0, signed=True) == "0 B"


@given(st.integers(min_value=0, max_value=2**60))
def test_int_and_plain_string_round_trip_exactly(n: int) -> None:
    assert parse_size(n) == n
    assert parse_size(str(n)) == n
    assert parse_size(f"{n} B") == n


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["KiB", "MiB", "GiB", "kb", "MB", "gB"]))
def test_whole_units_round_trip_exactly(n: int, unit: str) -> None:
    factor = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}[unit.lower()]
    assert parse_size(f"{n}{unit}") == n * factor
    assert parse_size(f"{n} {unit}") == n * factor


@given(st.integers(min_value=1, max_value=2**55))
def test_format_then_parse_stays_within_rounding(n: int) -> None:
    back = parse_size(format_size(n))
    # format_size keeps 3 significant digits: the round trip is within 0.5% (or exact for bytes).
    assert abs(back - n) <= 0.005 * n + 1


@given(st.integers(min_value=-(2**62), max_value=2**62), st.booleans())
def test_the_fast_int_path_formats_as_the_general_one(n: int, signed: bool) -> None:
    # The general path is taken for a float of the same value where it is exact; for larger ints,
    # from the unit loop written out here (the fast path is only a shortcut around type checks).
    size, index = float(abs(n)), 0
    while size >= 1024 and index < 5:
        size /= 1024
        index += 1
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    expected = f"{sign}{int(size)} B" if index == 0 else f"{sign}{size:.{2 if size < 10 else 1}f} {units[index]}"
    assert format_size(n, signed=signed) == expected
    if abs(n) < 2**53:
        assert format_size(float(n), signed=signed) == expected
