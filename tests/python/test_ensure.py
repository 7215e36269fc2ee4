"""EnsureEth against the devnet.

The write-up scenario: the wallet holds 0.03 ETH and a trade needs 0.1 ETH
(+ the 0.005 ETH gas reserve), so the sidecar converts tokens, DAI first
(highest priority under the priority strategy). Every reported figure of a
sent conversion is checked against receipts and balances read from the chain.

Only the conversion changes the chain; it runs once (module fixture). The
other tests hold whatever the wallet holds (SUFFICIENT for a small need,
INVALID_ARGUMENT with nothing sent for bad input). Repeating a request_id
(idempotency) is not tested here; every request gets a fresh id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import grpc
import pytest
from walletbalancer.v1 import wallet_balancer_pb2 as pb

from evm_keys import to_checksum_address
from fixed_point import format_usd, parse_usd, units_for_usd
from status_check import as_uint, assert_status_matches_chain

# Runs after the read-only tests (see conftest.pytest_collection_modifyitems).
pytestmark = pytest.mark.sends_transactions

CHAIN = "devnet"
WRITE_UP_ETH_HELD = 3 * 10**16  # 0.03 ETH: the devnet wallet's start balance
WRITE_UP_REQUIRED = 10**17  # 0.1 ETH
SMALL_REQUIRED = 10**15  # 0.001 ETH
TX_HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")

Outcome = pb.EnsureOutcome
State = pb.ConversionState


def request_id(label: str) -> str:
    return f"pytest-{label}-{uuid.uuid4().hex[:12]}"


def ensure(sidecar, required_wei: str, rid: str | None = None, chain: str = CHAIN):
    req = pb.EnsureEthRequest(
        chain=chain, required_wei=required_wei, request_id=request_id("ensure") if rid is None else rid
    )
    return sidecar.stub.EnsureEth(req, timeout=180)


def gas_reserve(sidecar) -> int:
    return int(str(sidecar.policy.get("gas_reserve_wei", "5000000000000000")))


def nonces(sidecar) -> tuple[int, int]:
    w = sidecar.wallet_address
    return sidecar.rpc.get_transaction_count(w, "latest"), sidecar.rpc.get_transaction_count(w, "pending")


def fail_rpc(what: str, e: grpc.RpcError):
    pytest.fail(f"{what} failed: {e.code()}: {e.details()}", pytrace=False)


# ---------------------------------------------------------------------------
# The write-up scenario (sends transactions; runs once)
# ---------------------------------------------------------------------------


@dataclass
class Converted:
    response: pb.EnsureEthResponse
    request_id: str
    block_before: int
    eth_before: int
    token_balances_before: dict[str, int]
    eth_answer_before: int
    nonce_before: int


@pytest.fixture(scope="module")
def converted(sidecar) -> Converted:
    rpc = sidecar.rpc
    w = sidecar.wallet_address
    block_before = rpc.block_number()
    eth_before = rpc.get_balance(w, block_before)
    if eth_before != WRITE_UP_ETH_HELD:
        pytest.fail(
            f"the write-up scenario needs the devnet wallet's fresh 0.03 ETH, it holds {eth_before} wei "
            "(did something else spend or convert before this test?)",
            pytrace=False,
        )
    balances = {t.symbol: rpc.erc20_balance_of(t.address, w, block_before) for t in sidecar.tokens}
    eth_answer = rpc.latest_round_data(sidecar.eth_usd_feed, block_before).answer
    nonce_before = rpc.get_transaction_count(w, block_before)
    rid = request_id("write-up")
    try:
        r = ensure(sidecar, str(WRITE_UP_REQUIRED), rid)
    except grpc.RpcError as e:
        fail_rpc("EnsureEth(required_wei=0.1 ETH) with 0.03 ETH held", e)
    return Converted(r, rid, block_before, eth_before, balances, eth_answer, nonce_before)


def test_write_up_scenario_converts(sidecar, converted):
    r = converted.response
    assert r.outcome == Outcome.ENSURE_OUTCOME_CONVERTED, f"outcome {Outcome.Name(r.outcome)}, expected CONVERTED"
    assert r.conversion_needed is True
    assert r.chain == CHAIN
    assert r.request_id == converted.request_id
    assert len(r.conversions) >= 1, "CONVERTED without any conversion"

    required = as_uint("required_wei", r.required_wei)
    reserve = as_uint("gas_reserve_wei", r.gas_reserve_wei)
    need = as_uint("need_wei", r.need_wei)
    before = as_uint("eth_before_wei", r.eth_before_wei)
    shortage = as_uint("shortage_wei", r.shortage_wei)
    target = as_uint("target_eth_out_wei", r.target_eth_out_wei)
    assert required == WRITE_UP_REQUIRED
    assert reserve == gas_reserve(sidecar)
    assert need == required + reserve, f"need_wei {need} != required {required} + reserve {reserve}"
    assert before == converted.eth_before, f"eth_before_wei {before} != balance read before the call {converted.eth_before}"
    assert shortage == max(0, need - before), f"shortage_wei {shortage} != need {need} - before {before}"
    # target = shortage + buffer_usd at the oracle ETH price, rounded down
    # (src/plan/allocate.rs: units_for_usd(buffer_usd, 18, eth_price, Down)).
    buffer_usd = parse_usd(str(sidecar.policy.get("buffer_usd", "5")))
    buffer_wei = units_for_usd(buffer_usd, 18, converted.eth_answer_before, 8, round_up=False)
    assert target == shortage + buffer_wei, (
        f"target_eth_out_wei {target} != shortage {shortage} + buffer {format_usd(buffer_usd)} USD ({buffer_wei} wei)"
    )
    assert target >= shortage


def test_write_up_scenario_converts_dai_first(sidecar, converted):
    r = converted.response
    symbols = [c.token_symbol for c in r.conversions]
    assert symbols and symbols[0] == "DAI", f"conversions in order {symbols}; DAI (priority 4) must come first"
    priorities = [sidecar.token(s).priority for s in symbols]
    assert priorities == sorted(priorities, reverse=True), f"conversions {symbols} not in priority order {priorities}"


def test_write_up_conversions_match_their_receipts(sidecar, converted):
    rpc = sidecar.rpc
    r = converted.response
    w = sidecar.wallet_address.lower()
    total_out = 0
    total_gas_cost = 0
    sold: dict[str, int] = {}
    for i, c in enumerate(r.conversions):
        who = f"conversion {i} ({c.token_symbol}, tx {c.tx_hash})"
        assert c.state == State.CONVERSION_STATE_CONFIRMED, f"{who}: state {State.Name(c.state)}"
        assert c.error == "", f"{who}: error {c.error!r}"
        assert c.conversion_id, f"{who}: no conversion_id"
        token = sidecar.token(c.token_symbol)
        assert c.token_address == token.address, f"{who}: token_address {c.token_address} != configured {token.address}"
        assert c.token_address == to_checksum_address(c.token_address)
        if c.venue == pb.VENUE_WETH_UNWRAP:
            assert token.symbol == "WETH"
            assert c.fee_tier == 0
        elif c.venue == pb.VENUE_UNISWAP_V2:
            assert c.venue_name == "uniswap-v2" and c.fee_tier == 0, f"{who}: {c.venue_name} fee {c.fee_tier}"
        elif c.venue == pb.VENUE_UNISWAP_V3:
            assert c.venue_name == "uniswap-v3" and c.fee_tier in (500, 3000), f"{who}: {c.venue_name} fee {c.fee_tier}"
        else:
            pytest.fail(f"{who}: venue {c.venue} is unspecified")

        eth_out = as_uint(f"{who}.eth_out_wei", c.eth_out_wei)
        max_in = as_uint(f"{who}.max_amount_in", c.max_amount_in)
        quoted_in = as_uint(f"{who}.quoted_amount_in", c.quoted_amount_in)
        amount_in = as_uint(f"{who}.amount_in", c.amount_in)
        assert eth_out > 0
        assert 0 < amount_in <= max_in, f"{who}: sold {amount_in}, bound {max_in}"
        assert quoted_in <= max_in, f"{who}: quoted {quoted_in} above the bound {max_in}"
        sold[c.token_symbol] = sold.get(c.token_symbol, 0) + amount_in

        # Prices as of the snapshot the plan was made from (feeds unchanged since).
        assert c.eth_price_usd == format_usd(converted.eth_answer_before)
        token_answer = rpc.latest_round_data(token.usd_feed, converted.block_before).answer
        assert c.token_price_usd == format_usd(token_answer)

        # Receipts: the swap and its approvals, all from the wallet, all successful.
        assert TX_HASH_RE.match(c.tx_hash), f"{who}: tx_hash {c.tx_hash!r} is not 0x + 64 lowercase hex"
        hashes = [c.tx_hash, *c.approval_tx_hashes]
        assert len(set(hashes)) == len(hashes), f"{who}: repeated hashes {hashes}"
        gas_used = 0
        gas_cost = 0
        for h in hashes:
            assert TX_HASH_RE.match(h), f"{who}: hash {h!r} is not 0x + 64 lowercase hex"
            receipt = rpc.get_transaction_receipt(h)
            assert receipt is not None, f"{who}: no receipt for {h}"
            assert receipt["status"] == "0x1", f"{who}: {h} has status {receipt['status']}"
            assert receipt["from"].lower() == w, f"{who}: {h} was sent by {receipt['from']}, not the wallet"
            gas_used += int(receipt["gasUsed"], 16)
            gas_cost += int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
        swap_receipt = rpc.get_transaction_receipt(c.tx_hash)
        assert c.block_number == int(swap_receipt["blockNumber"], 16), (
            f"{who}: block_number {c.block_number} != receipt block {int(swap_receipt['blockNumber'], 16)}"
        )
        assert c.gas_used == gas_used, (
            f"{who}: gas_used {c.gas_used} != gasUsed of the swap + approvals from the receipts ({gas_used})"
        )
        assert as_uint(f"{who}.gas_cost_wei", c.gas_cost_wei) == gas_cost, (
            f"{who}: gas_cost_wei {c.gas_cost_wei} != sum(gasUsed x effectiveGasPrice) = {gas_cost}"
        )
        total_out += eth_out
        total_gas_cost += gas_cost

    assert as_uint("total_eth_out_wei", r.total_eth_out_wei) == total_out
    assert as_uint("total_gas_cost_wei", r.total_gas_cost_wei) == total_gas_cost
    shortage = as_uint("shortage_wei", r.shortage_wei)
    target = as_uint("target_eth_out_wei", r.target_eth_out_wei)
    assert shortage <= total_out <= target, f"total_eth_out {total_out} outside [shortage {shortage}, target {target}]"

    # Tokens actually sold = the wallet's token balance decrease.
    after_block = r.block_number
    for sym, amount in sold.items():
        t = sidecar.token(sym)
        before = converted.token_balances_before[sym]
        after = rpc.erc20_balance_of(t.address, sidecar.wallet_address, after_block)
        assert before - after == amount, f"{sym}: balance fell by {before - after}, conversions report {amount} sold"


def test_write_up_balances_add_up(sidecar, converted):
    rpc = sidecar.rpc
    r = converted.response
    block = r.block_number
    latest = rpc.block_number()
    assert 0 < block <= latest, f"block_number {block} is not a mined block (latest {latest})"
    assert block >= max(c.block_number for c in r.conversions), "eth_after read before the last conversion was mined"
    after = as_uint("eth_after_wei", r.eth_after_wei)
    on_chain = rpc.get_balance(sidecar.wallet_address, block)
    assert after == on_chain, f"eth_after_wei {after} != eth_getBalance {on_chain} at block {block}"
    need = as_uint("need_wei", r.need_wei)
    assert after >= need, f"eth_after_wei {after} < need_wei {need}"
    before = as_uint("eth_before_wei", r.eth_before_wei)
    out = as_uint("total_eth_out_wei", r.total_eth_out_wei)
    gas = as_uint("total_gas_cost_wei", r.total_gas_cost_wei)
    assert before + out - gas == after, (
        f"eth_before {before} + total_eth_out {out} - total_gas_cost {gas} = {before + out - gas} != eth_after {after}"
    )
    # Every transaction the wallet sent is one of the reported ones.
    sent = rpc.get_transaction_count(sidecar.wallet_address, block) - converted.nonce_before
    reported = sum(1 + len(c.approval_tx_hashes) for c in r.conversions)
    assert sent == reported, f"the wallet sent {sent} transactions, the response reports {reported}"


def test_status_after_the_conversion_matches_the_chain(sidecar, converted):
    s = sidecar.stub.GetStatus(pb.GetStatusRequest(chain=CHAIN), timeout=30)
    assert s.block_number >= converted.response.block_number, "GetStatus answered from before the conversion"
    assert_status_matches_chain(sidecar, s)
    assert int(s.eth_balance_wei) >= int(converted.response.need_wei)


# ---------------------------------------------------------------------------
# Enough ETH already
# ---------------------------------------------------------------------------


def ensure_small(sidecar) -> tuple[pb.EnsureEthResponse, str]:
    rid = request_id("small")
    try:
        return ensure(sidecar, str(SMALL_REQUIRED), rid), rid
    except grpc.RpcError as e:
        fail_rpc("EnsureEth(required_wei=0.001 ETH)", e)


def test_small_requirement_is_sufficient(sidecar):
    rpc = sidecar.rpc
    nonce_before = nonces(sidecar)
    balance_before = rpc.get_balance(sidecar.wallet_address, "latest")
    r, rid = ensure_small(sidecar)
    assert r.outcome == Outcome.ENSURE_OUTCOME_SUFFICIENT, f"outcome {Outcome.Name(r.outcome)}, expected SUFFICIENT"
    assert r.conversion_needed is False
    assert r.chain == CHAIN and r.request_id == rid
    assert list(r.conversions) == [], f"SUFFICIENT with conversions: {r.conversions}"
    reserve = gas_reserve(sidecar)
    assert as_uint("required_wei", r.required_wei) == SMALL_REQUIRED
    assert as_uint("gas_reserve_wei", r.gas_reserve_wei) == reserve
    need = as_uint("need_wei", r.need_wei)
    assert need == SMALL_REQUIRED + reserve
    before = as_uint("eth_before_wei", r.eth_before_wei)
    assert before >= need, f"SUFFICIENT but eth_before_wei {before} < need_wei {need}"
    assert before == balance_before, f"eth_before_wei {before} != the wallet's balance {balance_before}"
    assert r.eth_after_wei == r.eth_before_wei, "nothing was sent, yet eth_after_wei != eth_before_wei"
    assert r.shortage_wei == "0" and r.target_eth_out_wei == "0"
    assert r.total_eth_out_wei == "0" and r.total_gas_cost_wei == "0"
    assert nonces(sidecar) == nonce_before, "a SUFFICIENT answer sent a transaction"


def test_sufficient_block_number_is_a_mined_block(sidecar):
    """block_number is "the block at which eth_after_wei was read
    (eth_before_wei when nothing was sent)": a client must be able to read
    the same balance at that block."""
    rpc = sidecar.rpc
    r, _ = ensure_small(sidecar)
    assert r.outcome == Outcome.ENSURE_OUTCOME_SUFFICIENT, f"outcome {Outcome.Name(r.outcome)}, expected SUFFICIENT"
    latest = rpc.block_number()
    assert 0 < r.block_number <= latest, (
        f"block_number {r.block_number} is not a mined block (latest is {latest}): "
        "the balance was read at the 'pending' block and its number reported"
    )
    on_chain = rpc.get_balance(sidecar.wallet_address, r.block_number)
    before = as_uint("eth_before_wei", r.eth_before_wei)
    assert before == on_chain, f"eth_before_wei {before} != eth_getBalance {on_chain} at block {r.block_number}"


# ---------------------------------------------------------------------------
# Bad input: INVALID_ARGUMENT naming the field, nothing sent
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "required_wei",
    ["-1", "1.5", "", "abc", str(2**256), "0"],
    ids=["negative", "fraction", "empty", "not-a-number", "2^256", "zero"],
)
def test_bad_required_wei_is_invalid_argument(sidecar, required_wei):
    before = nonces(sidecar)
    with pytest.raises(grpc.RpcError) as e:
        ensure(sidecar, required_wei)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (
        f"required_wei={required_wei!r}: got {e.value.code()}: {e.value.details()}"
    )
    assert (e.value.details() or "").startswith("required_wei"), (
        f"required_wei={required_wei!r}: the message does not start with the field: {e.value.details()!r}"
    )
    assert nonces(sidecar) == before, f"required_wei={required_wei!r}: a transaction was sent"


@pytest.mark.parametrize("rid", ["", "x" * 129], ids=["empty", "129-chars"])
def test_bad_request_id_is_invalid_argument(sidecar, rid):
    before = nonces(sidecar)
    with pytest.raises(grpc.RpcError) as e:
        ensure(sidecar, str(WRITE_UP_REQUIRED), rid)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, f"request_id={rid!r}: got {e.value.code()}: {e.value.details()}"
    assert "request_id" in (e.value.details() or ""), f"the message does not name request_id: {e.value.details()!r}"
    assert nonces(sidecar) == before, f"request_id={rid!r}: a transaction was sent"


def test_ensure_on_an_unknown_chain_is_not_found(sidecar):
    before = nonces(sidecar)
    with pytest.raises(grpc.RpcError) as e:
        ensure(sidecar, str(SMALL_REQUIRED), chain="nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, f"got {e.value.code()}: {e.value.details()}"
    assert nonces(sidecar) == before
