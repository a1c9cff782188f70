"""One unit convention for every size and rate people type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import ConfigError
from hubswarm.units import parse_quantity


@pytest.mark.parametrize(
    ("text", "rate", "expected"),
    [
        ("4096", False, 4096),
        ("8MiB", False, 8 * 1024 * 1024),
        ("10M", False, 10 * 1024 * 1024),
        ("1.5 MB", False, 1_500_000),
        ("64G", False, 64 * 1024**3),
        ("2MB/s", True, 2_000_000),
        ("20mbit", True, 2_500_000),
        ("512KiB/s", True, 512 * 1024),
        (".5k", False, 512),
        (7, False, 7),
    ],
)
def test_known_forms(text: str, rate: bool, expected: float) -> None:
    assert parse_quantity(text, rate=rate) == expected


@pytest.mark.parametrize("text", ["", "abc", "10 parsecs", "-5M", "1e9", "20mbit", "nan"])
def test_rejected_sizes(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_quantity(text)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "b", "k", "MiB", "GB"]))
def test_integer_quantities_scale_exactly(n: int, unit: str) -> None:
    factor = {"": 1, "b": 1, "k": 1024, "MiB": 1024**2, "GB": 1000**3}[unit]
    assert parse_quantity(f"{n}{unit}") == n * factor


@given(st.text(max_size=30))
def test_garbage_raises_only_config_error(text: str) -> None:
    try:
        value = parse_quantity(text, rate=True)
    except ConfigError:
        return
    assert value >= 0
