"""The GetStatus figures recomputed from the chain, shared by the status
tests and the post-conversion check in test_ensure.py.

Every figure is recomputed from values read directly from the chain at the
block the status reports, with Python integers only, using the sidecar's
rounding (src/plan/status.rs and src/plan/allocate.rs ``analyze``): USD
values and prices rounded down, reserves rounded up, the slippage-bounded
ETH capacity rounded down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from walletbalancer.v1 import wallet_balancer_pb2 as pb

from evm_keys import to_checksum_address
from fixed_point import format_usd, parse_usd, scale_div, units_for_usd, value_usd

CHAIN = "devnet"
CHAIN_ID = 31337
ETH_DECIMALS = 18
FEED_DECIMALS = 8  # every devnet feed (Chainlink USD scale)

# The devnet config's reserves (crates/devnet/src/lib.rs, Devnet::tokens), in config order.
CONFIGURED = [
    # symbol, min_reserve_usd, priority
    ("WETH", "100.00000000", 1),
    ("USDC", "50.00000000", 2),
    ("USDT", "50.00000000", 3),
    ("DAI", "25.00000000", 4),
]

USD_RE = re.compile(r"^\d+\.\d{8}$")
UINT_RE = re.compile(r"^(0|[1-9]\d*)$")


def as_uint(field: str, text: str) -> int:
    assert UINT_RE.match(text), f"{field} = {text!r} is not an unsigned decimal integer string"
    return int(text)


def as_usd(field: str, text: str) -> int:
    assert USD_RE.match(text), f"{field} = {text!r} is not a USD string with exactly 8 fractional digits"
    return parse_usd(text)


@dataclass
class Expected:
    """One token's figures as recomputed from the chain."""

    symbol: str
    address: str
    decimals: int
    balance: int
    answer: int
    price_usd: str
    value_usd: int
    min_reserve_usd: int
    min_reserve: int
    convertible: int
    convertible_usd: int
    capacity_wei: int
    priority: int


def expected_token(sidecar, token, block: int, eth_answer: int) -> Expected:
    rpc = sidecar.rpc
    policy = sidecar.policy
    min_conversion_usd = parse_usd(str(policy.get("min_conversion_usd", "10")))
    slippage_bps = int(policy.get("slippage_bps", 200))

    decimals = rpc.decimals(token.address, block)
    feed_decimals = rpc.decimals(token.usd_feed, block)
    assert feed_decimals == FEED_DECIMALS, f"{token.symbol}/USD feed has {feed_decimals} decimals, expected 8"
    balance = rpc.erc20_balance_of(token.address, sidecar.wallet_address, block)
    round_ = rpc.latest_round_data(token.usd_feed, block)
    answer = round_.answer
    assert answer > 0, f"{token.symbol}/USD feed answer {answer} is not positive"

    reserve_usd = parse_usd(token.min_reserve_usd)
    # min_reserve_usd at the oracle price, rounded UP so the reserve is never
    # undercut (src/plan/allocate.rs analyze(): units_for_usd(.., Rounding::Up)).
    min_reserve = units_for_usd(reserve_usd, decimals, answer, feed_decimals, round_up=True)
    raw_convertible = max(0, balance - min_reserve)
    # In USD: the balance's value less the reserve (one rounding, down): $240
    # above a $100 reserve is $140.00000000.
    raw_convertible_usd = (
        max(0, value_usd(balance, decimals, answer, feed_decimals) - reserve_usd) if raw_convertible else 0
    )
    # The most ETH the convertible amount is sure to bring: WETH 1:1; other
    # tokens at oracle prices after the slippage bound
    # (capacity_wei: floor(floor(c * 10000 / (10000 + bps)) in ETH, rounded down)).
    if token.address.lower() == sidecar.weth.lower():
        capacity = raw_convertible
    else:
        units = raw_convertible * 10_000 // (10_000 + slippage_bps)
        # units * answer / 10^(dec + fd) * 10^(18 + 8) / eth_answer, rounded down
        capacity = scale_div(
            units * answer, ETH_DECIMALS + FEED_DECIMALS - decimals - feed_decimals, eth_answer, round_up=False
        )
    eligible = raw_convertible_usd >= min_conversion_usd and capacity > 0
    return Expected(
        symbol=token.symbol,
        address=token.address,
        decimals=decimals,
        balance=balance,
        answer=answer,
        # Feeds have 8 decimals: the price string is the answer with 8 fractional digits.
        price_usd=format_usd(answer),
        value_usd=value_usd(balance, decimals, answer, feed_decimals),
        min_reserve_usd=reserve_usd,
        min_reserve=min_reserve,
        convertible=raw_convertible if eligible else 0,
        convertible_usd=raw_convertible_usd if eligible else 0,
        capacity_wei=capacity if eligible else 0,
        priority=token.priority,
    )


def assert_status_matches_chain(sidecar, s: pb.WalletStatus) -> list[Expected]:
    """Checks every figure of `s` against the chain at `s.block_number`;
    returns the recomputed token figures."""
    rpc = sidecar.rpc
    block = s.block_number
    latest = rpc.block_number()
    assert 0 < block <= latest, f"status block {block} is not a mined block (latest is {latest})"

    # Chain identity and wallet.
    assert s.chain == CHAIN
    assert s.chain_id == CHAIN_ID
    assert rpc.chain_id() == CHAIN_ID
    assert s.wallet_address == sidecar.wallet_address, (
        f"wallet_address {s.wallet_address} is not the address of the configured key {sidecar.wallet_address}"
    )
    assert s.wallet_address == to_checksum_address(s.wallet_address), "wallet_address is not EIP-55 checksummed"

    # Block timestamp.
    header = rpc.get_block(block)
    assert int(header["number"], 16) == block
    assert s.HasField("block_timestamp"), "block_timestamp is missing"
    assert s.block_timestamp.seconds == int(header["timestamp"], 16), (
        f"block_timestamp {s.block_timestamp.seconds} != timestamp {int(header['timestamp'], 16)} of block {block}"
    )
    assert s.block_timestamp.nanos == 0

    # Native ETH.
    eth_balance = rpc.get_balance(s.wallet_address, block)
    assert as_uint("eth_balance_wei", s.eth_balance_wei) == eth_balance, (
        f"eth_balance_wei {s.eth_balance_wei} != eth_getBalance {eth_balance} at block {block}"
    )
    eth_feed_decimals = rpc.decimals(sidecar.eth_usd_feed, block)
    assert eth_feed_decimals == FEED_DECIMALS
    eth_answer = rpc.latest_round_data(sidecar.eth_usd_feed, block).answer
    assert eth_answer > 0
    assert s.eth_price_usd == format_usd(eth_answer), (
        f"eth_price_usd {s.eth_price_usd} != ETH/USD feed answer {eth_answer} at block {block}"
    )
    eth_value = value_usd(eth_balance, ETH_DECIMALS, eth_answer, eth_feed_decimals)
    assert s.eth_value_usd == format_usd(eth_value), (
        f"eth_value_usd {s.eth_value_usd} != floor({eth_balance} wei x {eth_answer} / 1e18) = {format_usd(eth_value)}"
    )
    reserve = int(str(sidecar.policy.get("gas_reserve_wei", "5000000000000000")))
    assert as_uint("gas_reserve_wei", s.gas_reserve_wei) == reserve

    # Tokens: every configured token, in configuration order.
    assert [t.symbol for t in s.tokens] == [t.symbol for t in sidecar.tokens], "tokens are not in config order"
    assert [(t.symbol, t.min_reserve_usd, t.priority) for t in s.tokens] == CONFIGURED
    expected = [expected_token(sidecar, t, block, eth_answer) for t in sidecar.tokens]
    for got, exp in zip(s.tokens, expected):
        who = f"{exp.symbol} at block {block}"
        assert got.address == exp.address, f"{who}: address {got.address} != configured {exp.address}"
        assert got.address == to_checksum_address(got.address), f"{who}: address is not EIP-55 checksummed"
        assert got.decimals == exp.decimals, f"{who}: decimals {got.decimals} != decimals() {exp.decimals}"
        assert as_uint(f"{exp.symbol}.balance", got.balance) == exp.balance, (
            f"{who}: balance {got.balance} != balanceOf(wallet) {exp.balance}"
        )
        assert got.price_usd == exp.price_usd, f"{who}: price_usd {got.price_usd} != feed answer {exp.answer} (8 dec)"
        assert as_usd(f"{exp.symbol}.value_usd", got.value_usd) == exp.value_usd, (
            f"{who}: value_usd {got.value_usd} != floor(balance x answer / 10^decimals) = {format_usd(exp.value_usd)}"
        )
        assert as_usd(f"{exp.symbol}.min_reserve_usd", got.min_reserve_usd) == exp.min_reserve_usd
        assert as_uint(f"{exp.symbol}.min_reserve", got.min_reserve) == exp.min_reserve, (
            f"{who}: min_reserve {got.min_reserve} != ceil(min_reserve_usd x 10^decimals / price) = {exp.min_reserve}"
        )
        assert as_uint(f"{exp.symbol}.convertible", got.convertible) == exp.convertible, (
            f"{who}: convertible {got.convertible} != {exp.convertible} "
            f"(balance {exp.balance} - reserve {exp.min_reserve}, 0 when worth < min_conversion_usd)"
        )
        assert as_usd(f"{exp.symbol}.convertible_usd", got.convertible_usd) == exp.convertible_usd, (
            f"{who}: convertible_usd {got.convertible_usd} != {format_usd(exp.convertible_usd)}"
        )
        assert got.priority == exp.priority

    # Totals.
    total = eth_value + sum(e.value_usd for e in expected)
    assert as_usd("total_value_usd", s.total_value_usd) == total, (
        f"total_value_usd {s.total_value_usd} != ETH value + token values = {format_usd(total)}"
    )
    total_convertible = sum(e.convertible_usd for e in expected)
    assert as_usd("total_convertible_usd", s.total_convertible_usd) == total_convertible, (
        f"total_convertible_usd {s.total_convertible_usd} != {format_usd(total_convertible)}"
    )
    max_eth = eth_balance + sum(e.capacity_wei for e in expected)
    assert as_uint("max_eth_after_conversion_wei", s.max_eth_after_conversion_wei) == max_eth, (
        f"max_eth_after_conversion_wei {s.max_eth_after_conversion_wei} != ETH balance + per-token capacity {max_eth}"
    )
    return expected
