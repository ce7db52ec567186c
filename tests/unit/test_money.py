from decimal import Decimal

import pytest

from alpha.domain.money import NotExact, ceil_to_step, floor_to_step, is_multiple, round_to_step, to_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.1", Decimal("0.1")), (3, Decimal(3)), (0.1, Decimal("0.1")), (Decimal("2.50"), Decimal("2.50")), (" 7 ", Decimal(7))],
)
def test_to_decimal_takes_exact_values(value: object, expected: Decimal) -> None:
    assert to_decimal(value) == expected


@pytest.mark.parametrize("value", [0.1 + 0.2, float("nan"), float("inf"), "nan", "abc", True, None, [1]])
def test_to_decimal_refuses_inexact_or_non_numbers(value: object) -> None:
    with pytest.raises(NotExact):
        to_decimal(value, field="price")


def test_to_decimal_error_names_the_field() -> None:
    with pytest.raises(NotExact, match="mark"):
        to_decimal("x", field="mark")


def test_step_rounding() -> None:
    step = Decimal("0.001")
    assert floor_to_step(Decimal("1.23456"), step) == Decimal("1.234")
    assert floor_to_step(Decimal("-1.23456"), step) == Decimal("-1.234")
    assert ceil_to_step(Decimal("1.2341"), step) == Decimal("1.235")
    assert round_to_step(Decimal("1.2345"), step) == Decimal("1.234")
    assert is_multiple(Decimal("1.234"), step)
    assert not is_multiple(Decimal("1.2345"), step)
