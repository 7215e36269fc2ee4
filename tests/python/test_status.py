"""GetStatus against the devnet: every figure is compared with values read
directly from the chain at the block the status reports (see
status_check.py). Order-independent: nothing is compared with fixed
balances, so it holds before and after conversions (test_ensure.py repeats
the check after converting); the conftest runs these read-only tests first,
on the fresh devnet wallet.
"""

from __future__ import annotations

import time

import grpc
import pytest
from walletbalancer.v1 import wallet_balancer_pb2 as pb

from evm_rpc import SEL_UPDATE_ANSWER, encode_int256
from status_check import CHAIN, FEED_DECIMALS, USD_RE, assert_status_matches_chain


def get_status(sidecar, chain: str = CHAIN) -> pb.WalletStatus:
    return sidecar.stub.GetStatus(pb.GetStatusRequest(chain=chain), timeout=30)


def get_status_at_least(sidecar, block: int, timeout: float = 10.0) -> pb.WalletStatus:
    """GetStatus once it describes `block` or a later one. GetStatus may be
    served from a snapshot kept current by following new blocks (the sidecar
    polls the head; `status_max_age_ms`), so a write made outside the sidecar
    shows up within a poll, not necessarily in the very next answer."""
    deadline = time.monotonic() + timeout
    while True:
        s = get_status(sidecar)
        if s.block_number >= block:
            return s
        assert time.monotonic() < deadline, f"GetStatus still at block {s.block_number} < {block} after {timeout}s"
        time.sleep(0.02)


def test_status_matches_the_chain_at_the_reported_block(sidecar):
    expected = assert_status_matches_chain(sidecar, get_status(sidecar))
    # Not vacuous: on the devnet wallet at least one token is convertible.
    assert any(e.convertible > 0 for e in expected), "no token is convertible: the check compared only zeros"


def test_status_usd_fields_have_exactly_8_decimals(sidecar):
    s = get_status(sidecar)
    fields = {
        "eth_price_usd": s.eth_price_usd,
        "eth_value_usd": s.eth_value_usd,
        "total_value_usd": s.total_value_usd,
        "total_convertible_usd": s.total_convertible_usd,
    }
    for t in s.tokens:
        for name in ("price_usd", "value_usd", "min_reserve_usd", "convertible_usd"):
            fields[f"{t.symbol}.{name}"] = getattr(t, name)
    bad = {k: v for k, v in fields.items() if not USD_RE.match(v)}
    assert not bad, f"USD fields without exactly 8 fractional digits: {bad}"


def test_status_requires_a_chain(sidecar):
    with pytest.raises(grpc.RpcError) as e:
        get_status(sidecar, chain="")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, f"got {e.value.code()}: {e.value.details()}"
    assert "chain" in (e.value.details() or ""), f"the message does not name the field: {e.value.details()!r}"


def test_status_of_an_unknown_chain_is_not_found(sidecar):
    with pytest.raises(grpc.RpcError) as e:
        get_status(sidecar, chain="nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, f"got {e.value.code()}: {e.value.details()}"


# Non-round prices, so every rounding direction matters (at the devnet's
# round $1.00 / $3000 prices ceil and floor mostly agree). Close enough to the
# pools' prices that nothing else is disturbed; restored afterwards.
ODD_ANSWERS = {
    "ETH": 300012345678,  # $3000.12345678
    "USDC": 99991234,  # $0.99991234
    "USDT": 100012347,  # $1.00012347
    "DAI": 99987651,  # $0.99987651
}


@pytest.mark.sends_transactions
def test_status_rounding_at_non_round_prices(sidecar):
    rpc = sidecar.rpc
    feeds = {"ETH": sidecar.eth_usd_feed}
    for t in sidecar.tokens:
        if t.usd_feed.lower() != sidecar.eth_usd_feed.lower():
            feeds[t.symbol] = t.usd_feed
    assert set(feeds) == set(ODD_ANSWERS), f"unexpected feeds {sorted(feeds)}"
    original = {name: rpc.latest_round_data(addr).answer for name, addr in feeds.items()}

    def post(name: str, answer: int) -> int:
        feed = feeds[name]
        receipt = rpc.send_transaction(rpc.owner(feed), feed, SEL_UPDATE_ANSWER + encode_int256(answer))
        assert receipt["status"] == "0x1", f"updateAnswer({answer}) on the {name}/USD feed reverted"
        return int(receipt["blockNumber"], 16)

    try:
        last_block = max(post(name, answer) for name, answer in ODD_ANSWERS.items())
        s = get_status_at_least(sidecar, last_block)
        assert s.eth_price_usd == "3000.12345678"
        expected = assert_status_matches_chain(sidecar, s)
        # Not vacuous: some reserve is a non-integral number of base units, so
        # rounding it up differs from rounding it down.
        inexact = [
            e.symbol
            for e in expected
            if e.min_reserve_usd * 10 ** (e.decimals + FEED_DECIMALS - 8) % e.answer
        ]
        assert inexact, "every reserve divided exactly: the prices did not exercise the rounding"
    finally:
        for name, answer in original.items():
            post(name, answer)
