from datetime import timedelta
from decimal import Decimal

import pytest

from alpha.domain.clock import utc
from alpha.domain.funding import FundingRate, annualise, funding_payment, next_settlement_after, per_interval


def test_annualise_depends_on_interval() -> None:
    rate = Decimal("0.0001")
    assert annualise(rate, timedelta(hours=8)) == Decimal("0.1095")
    assert annualise(rate, timedelta(hours=1)) == Decimal("0.876")
    assert per_interval(annualise(rate, timedelta(hours=4)), timedelta(hours=4)) == rate


def test_funding_rate_carries_its_interval() -> None:
    fr = FundingRate(Decimal("0.0001"), timedelta(hours=8), utc(2024, 1, 1, 8))
    assert fr.annualised == Decimal("0.1095")
    assert fr.interval_hours == 8


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity")])
def test_funding_rate_refuses_non_finite(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        FundingRate(bad, timedelta(hours=8), utc(2024, 1, 1))


def test_funding_rate_refuses_zero_interval_and_naive_time() -> None:
    with pytest.raises(ValueError):
        FundingRate(Decimal("0.0001"), timedelta(0), utc(2024, 1, 1))
    from datetime import datetime

    with pytest.raises(ValueError):
        FundingRate(Decimal("0.0001"), timedelta(hours=1), datetime(2024, 1, 1))


def test_payment_longs_pay_shorts_when_rate_positive() -> None:
    rate = Decimal("0.0001")
    long_gets = funding_payment(Decimal("2"), Decimal("50000"), rate)
    short_gets = funding_payment(Decimal("-2"), Decimal("50000"), rate)
    assert long_gets == Decimal("-10")
    assert short_gets == Decimal("10")
    assert long_gets + short_gets == 0


def test_next_settlement_grid() -> None:
    assert next_settlement_after(utc(2024, 1, 1, 7, 59), timedelta(hours=8)) == utc(2024, 1, 1, 8)
    assert next_settlement_after(utc(2024, 1, 1, 8), timedelta(hours=8)) == utc(2024, 1, 1, 16)
    assert next_settlement_after(utc(2024, 1, 1, 23, 30), timedelta(hours=8)) == utc(2024, 1, 2, 0)
    assert next_settlement_after(utc(2024, 1, 1, 3, 10), timedelta(hours=1)) == utc(2024, 1, 1, 4)
