"""The Aave fuse refuses an oracle price it cannot have (a dead feed) before anything is priced on it.

AaveOracle answers a feed's price only when it is positive, else asks its fallback oracle (none
here): the call reverts. That revert is the feed's failure, not a refusal of a request of ours,
so the fuse reports it as a refused payload (transient), and the account read with it.
"""

from __future__ import annotations

import pytest

from fuses.aave import AaveLendingFuse
from fuses.base import BadPayloadError, TransientError
from tests.chain.conftest import Chain, rpc

pytestmark = pytest.mark.chain


@pytest.fixture
def chain(market_chain: Chain) -> Chain:
    return market_chain  # the ``fuse`` fixture runs on this test's market


async def test_a_zero_oracle_price_is_refused_by_name(market_chain: Chain, fuse: AaveLendingFuse) -> None:
    assert await fuse.price("WETH") > 0
    feed = market_chain.market.tokens["WETH"].feed
    rpc(market_chain.url, "anvil_setStorageAt", [feed, "0x0", "0x" + "00" * 32])  # the aggregator's answer: 0
    with pytest.raises(BadPayloadError, match="the oracle cannot price WETH") as caught:
        await fuse.price("WETH")
    assert caught.value.field == "WETH oracle price" and caught.value.check == "unreadable"
    assert isinstance(caught.value, TransientError)  # the account is unreadable for now: trading pauses, nothing crashes
    with pytest.raises(BadPayloadError):
        await fuse.account()
    assert await fuse.price("USDC") > 0  # the other reserves still read
