"""``HedgeRef``: typed hedge references whose text is the hedge id journals and golden files hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpha.domain.actions import HedgeRef, HedgeRefKind

# The texts the strategy and the monitors wrote as plain strings before references were typed.
KNOWN = [
    (HedgeRef.carry("BTC", "binance-spot:BTC/USDT", short="binance-perp:BTC/USDT:USDT"), "BTC|binance-spot:BTC/USDT|binance-perp:BTC/USDT:USDT"),
    (HedgeRef.carry("BTC", "perp-cex:BTC/USDC:USDC", borrow_fuse="lending"), "BTC|perp-cex:BTC/USDC:USDC|lending:borrow"),
    (HedgeRef.unwind("spot:ETH/USDC"), "unwind|spot:ETH/USDC"),
    (HedgeRef.reduce(3, "ETH"), "reduce-3-ETH"),
    (HedgeRef.neutralise("SOL"), "neutralise-SOL"),
    (HedgeRef.named("h1"), "h1"),
    (HedgeRef.named("BTC|test"), "BTC|test"),
]


@pytest.mark.parametrize(("ref", "text"), KNOWN)
def test_text_is_the_former_hedge_id_and_parses_back(ref: HedgeRef, text: str) -> None:
    assert str(ref) == text
    assert f"{ref}: reason" == f"{text}: reason"
    assert HedgeRef.parse(text) == ref


def test_parse_reads_the_parts_a_synthetic_short_is_recognised_by() -> None:
    synthetic = HedgeRef.parse("ETH|perp-dex:ETH/USDC:USDC|aave:borrow")
    traded = HedgeRef.parse("ETH|spot:ETH/USDC|perp-dex:ETH/USDC:USDC")

    assert (synthetic.kind, synthetic.asset, synthetic.long, synthetic.short, synthetic.borrow_fuse) == (
        HedgeRefKind.CARRY, "ETH", "perp-dex:ETH/USDC:USDC", None, "aave",
    )
    assert (traded.short, traded.borrow_fuse) == ("perp-dex:ETH/USDC:USDC", None)


def test_a_carry_hedge_has_exactly_one_short_side() -> None:
    with pytest.raises(ValueError, match="not both or neither"):
        HedgeRef.carry("BTC", "spot:BTC/USDC")
    with pytest.raises(ValueError, match="not both or neither"):
        HedgeRef.carry("BTC", "spot:BTC/USDC", short="perp:BTC/USDC:USDC", borrow_fuse="lending")


def test_a_name_that_reads_as_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="reduce"):
        HedgeRef.named("reduce-1-BTC")


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-/:._", min_size=1, max_size=12)
_refs = st.one_of(
    st.builds(lambda a, lo, sh: HedgeRef.carry(a, lo, short=sh), _word, _word, _word.filter(lambda s: not s.endswith(":borrow"))),
    st.builds(lambda a, lo, f: HedgeRef.carry(a, lo, borrow_fuse=f), _word, _word, _word),
    st.builds(HedgeRef.unwind, _word),
    st.builds(HedgeRef.reduce, st.integers(min_value=0, max_value=10**6), _word),
    st.builds(HedgeRef.neutralise, _word),
)


@given(_refs)
def test_every_reference_reads_back_from_its_text(ref: HedgeRef) -> None:
    assert HedgeRef.parse(str(ref)) == ref
