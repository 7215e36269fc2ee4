"""The Python client package (clients/python, installed into the venv by
scripts/setup) against the running sidecar on the devnet.

Read-only tests run first (nothing sent: SUFFICIENT, dry runs, refusals);
the conversion followed on the stream is marked ``after_write_up`` so it
runs after test_ensure.py's write-up scenario, which needs the fresh wallet.
A few tests of the error mapping need no sidecar at all.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

import wallet_balancer_client as wbc
from wallet_balancer_client import (
    ConversionState,
    FailedPrecondition,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
    Outcome,
    PriceDeviation,
    Unavailable,
    WalletBalancer,
)
from wallet_balancer_client.errors import from_rpc_error

ROOT = Path(__file__).resolve().parent.parent.parent
EXECUTOR = ROOT / "clients" / "python" / "examples" / "executor.py"
CHAIN = "devnet"
SMALL = 10**15  # 0.001 ETH: covered by the devnet wallet's 0.03 ETH
HUGE = 10**24  # a million ETH: never covered
USD_EXPONENT = -8  # the API's 8-decimal USD strings


@pytest.fixture(scope="module")
def wb(sidecar):
    with WalletBalancer(sidecar.grpc_target, chain=CHAIN, timeout=30, retries=2) as client:
        yield client


def nonces(sidecar) -> tuple[int, int]:
    w = sidecar.wallet_address
    return sidecar.rpc.get_transaction_count(w, "latest"), sidecar.rpc.get_transaction_count(w, "pending")


# ---------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------


def test_the_installed_package_is_used_with_its_generated_stubs():
    pkg = Path(wbc.__file__).resolve()
    assert ROOT / "clients" not in pkg.parents, f"imported from the source tree, not the installed package: {pkg}"
    from wallet_balancer_client._proto import wallet_balancer_pb2, wallet_balancer_pb2_grpc

    assert wallet_balancer_pb2.DESCRIPTOR.name == "walletbalancer/v1/wallet_balancer.proto"
    assert hasattr(wallet_balancer_pb2_grpc, "WalletBalancerStub")
    assert (pkg.parent / "py.typed").is_file(), "py.typed not installed"


# ---------------------------------------------------------------------------
# GetStatus, health
# ---------------------------------------------------------------------------


def test_status_is_typed_and_matches_the_chain(sidecar, wb):
    s = wb.status()
    assert s.chain == CHAIN and s.chain_id == 31337
    assert s.wallet_address.lower() == sidecar.wallet_address.lower()
    assert isinstance(s.block_timestamp, datetime) and s.block_timestamp.tzinfo is not None
    assert s.eth_balance_wei == sidecar.rpc.get_balance(sidecar.wallet_address, s.block_number)
    assert [t.symbol for t in s.tokens] == [t.symbol for t in sidecar.tokens]
    for t in s.tokens:
        on_chain = sidecar.rpc.erc20_balance_of(t.address, sidecar.wallet_address, s.block_number)
        assert t.balance == on_chain, f"{t.symbol}: {t.balance} != {on_chain}"
        assert type(t.balance) is int and type(t.convertible) is int and type(t.min_reserve) is int
        for name in ("price_usd", "value_usd", "min_reserve_usd", "convertible_usd"):
            v = getattr(t, name)
            assert isinstance(v, Decimal) and v.as_tuple().exponent == USD_EXPONENT, f"{t.symbol}.{name} = {v!r}"
    for name in ("eth_price_usd", "eth_value_usd", "total_value_usd", "total_convertible_usd"):
        v = getattr(s, name)
        assert isinstance(v, Decimal) and v.as_tuple().exponent == USD_EXPONENT, f"{name} = {v!r}"
    assert s.total_value_usd == s.eth_value_usd + sum(t.value_usd for t in s.tokens)
    assert s.total_convertible_usd == sum(t.convertible_usd for t in s.tokens)
    assert s.max_eth_after_conversion_wei >= s.eth_balance_wei
    assert s.token(sidecar.tokens[0].symbol).symbol == sidecar.tokens[0].symbol
    assert s.raw.chain == CHAIN


def test_chain_is_per_call_or_per_client(sidecar, wb):
    assert wb.status(chain=CHAIN).chain == CHAIN
    with WalletBalancer(sidecar.grpc_target) as no_default:
        with pytest.raises(ValueError, match="chain"):
            no_default.status()
        assert no_default.status(CHAIN).chain == CHAIN


def test_health(wb):
    assert wb.health() is True
    assert wb.health("") is True
    with pytest.raises(NotFound):
        wb.health("no.such.Service")
    wb.wait_until_serving(timeout=5)


# ---------------------------------------------------------------------------
# EnsureEth without sending anything
# ---------------------------------------------------------------------------


def test_ensure_sufficient_sends_nothing(sidecar, wb):
    before = nonces(sidecar)
    r = wb.ensure_eth(SMALL)
    assert r.outcome is Outcome.SUFFICIENT and r.conversion_needed is False
    assert r.request_id.startswith("py-")
    assert r.required_wei == SMALL and r.need_wei == SMALL + r.gas_reserve_wei
    assert r.eth_after_wei == r.eth_before_wei >= r.need_wei
    assert r.shortage_wei == 0 and r.target_eth_out_wei == 0 and r.conversions == ()
    assert r.total_eth_out_wei == 0 and r.total_gas_cost_wei == 0
    assert nonces(sidecar) == before, "SUFFICIENT sent a transaction"


def test_dry_run_returns_the_plan_and_sends_nothing(sidecar, wb):
    s = wb.status()
    required = s.eth_balance_wei  # short by the gas reserve: a conversion is needed
    before = nonces(sidecar)
    r = wb.ensure_eth(required, dry_run=True)
    assert r.outcome is Outcome.PLANNED and r.conversion_needed is True
    assert r.shortage_wei == r.need_wei - r.eth_before_wei > 0
    assert r.conversions, "a plan without conversions"
    assert sum(c.eth_out_wei for c in r.conversions) == r.total_eth_out_wei >= r.shortage_wei
    for c in r.conversions:
        assert c.state is ConversionState.PLANNED and c.tx_hash is None and c.amount_in is None
        assert 0 < c.quoted_amount_in <= c.max_amount_in
        assert isinstance(c.token_price_usd, Decimal) and isinstance(c.eth_price_usd, Decimal)
    assert nonces(sidecar) == before, "a dry run sent a transaction"
    assert sidecar.rpc.get_balance(sidecar.wallet_address) == s.eth_balance_wei


def test_the_same_request_id_returns_the_first_result(wb):
    rid = wbc.new_request_id("pytest-idem")
    first = wb.ensure_eth(SMALL, rid)
    again = wb.ensure_eth(SMALL, rid)
    assert again == first and again.raw == first.raw
    with pytest.raises(IdempotencyConflict) as e:
        wb.ensure_eth(SMALL + 1, rid)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS and e.value.request_id == rid


def test_insufficient_funds_carries_the_figures(sidecar, wb):
    before = nonces(sidecar)
    rid = wbc.new_request_id("pytest-short")
    with pytest.raises(InsufficientFunds) as info:
        wb.ensure_eth(HUGE, rid)
    e = info.value
    assert isinstance(e, FailedPrecondition)
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert e.reason == "INSUFFICIENT_FUNDS" and e.domain == "walletbalancer.v1"
    assert e.request_id == rid and e.attempts == 1 and e.message
    s = wb.status()
    assert type(e.shortage_wei) is int and e.shortage_wei >= HUGE + s.gas_reserve_wei - s.eth_balance_wei
    assert type(e.convertible_wei) is int and e.convertible_wei > 0
    assert isinstance(e.shortage_usd, Decimal) and e.shortage_usd > 0
    assert isinstance(e.convertible_usd, Decimal) and e.convertible_usd > 0
    assert set(e.metadata) >= {"shortage_wei", "shortage_usd", "convertible_wei", "convertible_usd"}
    assert nonces(sidecar) == before


def test_invalid_arguments_name_the_field(wb):
    with pytest.raises(InvalidArgument) as e:
        wb.ensure_eth(0)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "required_wei", repr(e.value)
    with pytest.raises(InvalidArgument) as e:
        wb.ensure_eth(SMALL, "not a valid id!")
    assert e.value.field == "request_id", repr(e.value)
    with pytest.raises(InvalidArgument) as e:
        wb.status(chain="")
    assert e.value.field == "chain", repr(e.value)


def test_unknown_chain_is_not_found(wb):
    with pytest.raises(NotFound) as e:
        wb.ensure_eth(SMALL, chain="nowhere")
    assert e.value.code == grpc.StatusCode.NOT_FOUND


def test_money_is_never_a_float(wb):
    for bad in (0.1, Decimal("1"), "1000", True, None):
        with pytest.raises(TypeError):
            wb.ensure_eth(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Retries and deadlines
# ---------------------------------------------------------------------------


class _Injected(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "injected by the test"

    def trailing_metadata(self):
        return ()


class _Recorder(grpc.UnaryUnaryClientInterceptor):
    """Records every EnsureEth request_id; fails the first `fail` attempts
    with `code` before they reach the sidecar."""

    def __init__(self, fail: int = 0, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE):
        self.fail = fail
        self.code = code
        self.request_ids: list[str] = []

    def intercept_unary_unary(self, continuation, client_call_details, request):
        if hasattr(request, "request_id"):
            self.request_ids.append(request.request_id)
        if self.fail > 0:
            self.fail -= 1
            raise _Injected(self.code)
        return continuation(client_call_details, request)


def _client_with(sidecar, recorder, **kw) -> tuple[grpc.Channel, WalletBalancer]:
    channel = grpc.intercept_channel(
        grpc.insecure_channel(sidecar.grpc_target, options=[("grpc.enable_http_proxy", 0)]), recorder
    )
    return channel, WalletBalancer(channel, chain=CHAIN, backoff=0.01, **kw)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_retries_reuse_the_request_id(sidecar, code):
    rec = _Recorder(fail=2, code=code)
    channel, client = _client_with(sidecar, rec, retries=3)
    try:
        r = client.ensure_eth(SMALL)
    finally:
        channel.close()
    assert r.outcome is Outcome.SUFFICIENT
    assert len(rec.request_ids) == 3 and len(set(rec.request_ids)) == 1, rec.request_ids
    assert r.request_id == rec.request_ids[0]


def test_exhausted_retries_raise_with_the_attempts(sidecar):
    rec = _Recorder(fail=10)
    channel, client = _client_with(sidecar, rec, retries=2)
    try:
        with pytest.raises(Unavailable) as e:
            client.ensure_eth(SMALL, "pytest-exhausted-1")
    finally:
        channel.close()
    assert e.value.attempts == 3 and e.value.request_id == "pytest-exhausted-1"
    assert rec.request_ids == ["pytest-exhausted-1"] * 3


def _unused_port() -> int:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_deadline_covers_the_whole_call():
    # wait_for_ready on a port nobody listens on: the first attempt waits
    # for the call's whole budget; no time is left for a retry.
    rec = _Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{_unused_port()}"), rec)
    client = WalletBalancer(channel, chain=CHAIN, retries=3, backoff=0.01, wait_for_ready=True)
    started = time.monotonic()
    try:
        with pytest.raises(wbc.DeadlineExceeded) as e:
            client.ensure_eth(SMALL, timeout=0.3)
    finally:
        channel.close()
    elapsed = time.monotonic() - started
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and e.value.attempts == 1
    assert len(rec.request_ids) == 1
    assert 0.3 <= elapsed < 0.4, f"a 0.3 s budget took {elapsed:.3f} s"


class _SlowFailure(grpc.UnaryUnaryClientInterceptor):
    """Every attempt uses up its whole deadline, then fails with
    DEADLINE_EXCEEDED (a sidecar that answers too late); records each
    attempt's deadline."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def intercept_unary_unary(self, continuation, client_call_details, request):
        self.timeouts.append(client_call_details.timeout)
        time.sleep(client_call_details.timeout)
        raise _Injected(grpc.StatusCode.DEADLINE_EXCEEDED)


def test_retries_share_the_deadline():
    slow = _SlowFailure()
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{_unused_port()}"), slow)
    client = WalletBalancer(channel, chain=CHAIN, retries=5, backoff=0.01)
    started = time.monotonic()
    try:
        with pytest.raises(wbc.DeadlineExceeded) as e:
            client.status(timeout=0.5)
    finally:
        channel.close()
    elapsed = time.monotonic() - started
    assert elapsed < 0.6, f"a 0.5 s budget took {elapsed:.3f} s over {e.value.attempts} attempts"
    assert len(slow.timeouts) == e.value.attempts == 1 and slow.timeouts[0] <= 0.5


def test_unavailable_is_retried_until_the_budget_is_spent(sidecar):
    rec = _Recorder(fail=1000)
    channel, client = _client_with(sidecar, rec, retries=1000)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as e:
            client.ensure_eth(SMALL, "pytest-budget-1", timeout=0.5)
    finally:
        channel.close()
    elapsed = time.monotonic() - started
    assert elapsed < 0.55, f"a 0.5 s budget took {elapsed:.3f} s"
    assert e.value.attempts > 3 and set(rec.request_ids) == {"pytest-budget-1"}


def test_non_retryable_errors_are_not_retried(sidecar):
    rec = _Recorder()
    channel, client = _client_with(sidecar, rec, retries=3)
    try:
        with pytest.raises(InsufficientFunds) as e:
            client.ensure_eth(HUGE)
    finally:
        channel.close()
    assert e.value.attempts == 1 and len(rec.request_ids) == 1


def test_an_unreachable_sidecar_is_unavailable():
    with WalletBalancer(f"127.0.0.1:{_unused_port()}", chain=CHAIN, retries=1, backoff=0.01, timeout=2) as client:
        with pytest.raises(Unavailable) as e:
            client.status()
        assert e.value.attempts == 2
        assert client.health() is False


# ---------------------------------------------------------------------------
# Error mapping (no sidecar): ErrorInfo from grpc-status-details-bin
# ---------------------------------------------------------------------------


class _DetailedError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, message: str, *details):
        self._code, self._message = code, message
        status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
        for d in details:
            a = any_pb2.Any()
            a.Pack(d)
            status.details.append(a)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers


def test_price_deviation_is_mapped_with_decimal_prices():
    info = error_details_pb2.ErrorInfo(
        reason="PRICE_DEVIATION",
        domain="walletbalancer.v1",
        metadata={
            "token": "USDC",
            "quoted_usd_per_token": "1.05000000",
            "oracle_usd_per_token": "1.00000000",
        },
    )
    e = from_rpc_error(_DetailedError(grpc.StatusCode.FAILED_PRECONDITION, "pool away from the oracle", info))
    assert type(e) is PriceDeviation and isinstance(e, FailedPrecondition)
    assert e.token == "USDC" and e.quoted_usd_per_token == Decimal("1.05") and e.oracle_usd_per_token == Decimal(1)
    assert "PRICE_DEVIATION" in str(e) and e.message == "pool away from the oracle"


def test_limits_and_bad_requests_are_mapped():
    info = error_details_pb2.ErrorInfo(
        reason="HOURLY_LIMIT", domain="walletbalancer.v1", metadata={"requested_usd": "10.00000000", "remaining_usd": "0.50000000"}
    )
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromSeconds(750)
    e = from_rpc_error(_DetailedError(grpc.StatusCode.RESOURCE_EXHAUSTED, "hourly limit", info, retry))
    assert type(e) is wbc.LimitExceeded and e.reason == "HOURLY_LIMIT"
    assert e.requested_usd == Decimal("10") and e.remaining_usd == Decimal("0.5")
    # The server's RetryInfo: when the rolling hour frees enough.
    assert e.retry_delay == 750.0
    e = from_rpc_error(_DetailedError(grpc.StatusCode.RESOURCE_EXHAUSTED, "hourly limit", info))
    assert e.retry_delay is None

    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="required_wei", description="not a number")]
    )
    e = from_rpc_error(_DetailedError(grpc.StatusCode.INVALID_ARGUMENT, "required_wei: not a number", bad))
    assert type(e) is InvalidArgument and e.field == "required_wei"
    assert e.field_violations == (("required_wei", "not a number"),)

    # Without details (or with mangled ones) the code still decides.
    e = from_rpc_error(_Injected(grpc.StatusCode.FAILED_PRECONDITION))
    assert type(e) is FailedPrecondition and e.reason is None and e.metadata == {}


# ---------------------------------------------------------------------------
# The example executor
# ---------------------------------------------------------------------------


def _executor(sidecar, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXECUTOR), "--target", sidecar.grpc_target, "--chain", CHAIN, "--wait-ready", "10", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_example_executor_trades_when_funded_and_skips_when_short(sidecar):
    before = nonces(sidecar)
    p = _executor(sidecar, "--run-id", wbc.new_request_id("pytest-exec"), "--trade", str(SMALL), "--trade", str(HUGE))
    assert p.returncode == 0, p.stderr
    log = p.stderr
    assert "sufficient" in log and "placed" in log, log
    assert "skip trade" in log and "insufficient funds" in log, log
    assert "done: 1 placed, 1 skipped" in log, log
    assert nonces(sidecar) == before


# ---------------------------------------------------------------------------
# A conversion, followed on StreamConversions (after the write-up scenario)
# ---------------------------------------------------------------------------


@pytest.mark.sends_transactions
@pytest.mark.after_write_up
def test_conversion_is_reported_and_streamed(sidecar, wb):
    # Where the journal stands now (test_ensure.py has converted before).
    past = list(wb.conversions(after=0, timeout=3))
    cursor = past[-1].sequence if past else 0
    assert [e.sequence for e in past] == sorted({e.sequence for e in past}), "sequences not strictly increasing"

    s = wb.status()
    required = s.eth_balance_wei - s.gas_reserve_wei + 2 * 10**16  # short by 0.02 ETH
    if s.max_eth_after_conversion_wei < required + s.gas_reserve_wei:
        pytest.skip(f"the devnet wallet cannot cover another conversion: {s}")
    rid = wbc.new_request_id("pytest-stream")
    r = wb.ensure_eth(required, rid)
    assert r.outcome is Outcome.CONVERTED and r.request_id == rid
    assert r.eth_after_wei >= r.need_wei == required + r.gas_reserve_wei
    assert r.eth_after_wei == sidecar.rpc.get_balance(sidecar.wallet_address, r.block_number)
    assert r.total_eth_out_wei == sum(c.eth_out_wei for c in r.conversions) >= r.shortage_wei
    assert r.total_gas_cost_wei == sum(c.gas_cost_wei for c in r.conversions) > 0
    for c in r.conversions:
        assert c.state is ConversionState.CONFIRMED and c.tx_hash and c.block_number > 0
        assert type(c.amount_in) is int and 0 < c.amount_in <= c.max_amount_in
        receipt = sidecar.rpc.get_transaction_receipt(c.tx_hash)
        assert receipt is not None and int(receipt["status"], 16) == 1

    # The stream replays this request's events after the cursor, in order.
    wanted = {c.conversion_id for c in r.conversions}
    confirmed: dict[str, str] = {}
    seen = []
    for ev in wb.conversions(after=cursor, chain=CHAIN, timeout=30):
        assert ev.sequence > cursor and (not seen or ev.sequence > seen[-1].sequence)
        seen.append(ev)
        if ev.request_id == rid and ev.state is ConversionState.CONFIRMED:
            confirmed[ev.conversion_id] = ev.tx_hash or ""
        if set(confirmed) >= wanted:
            break  # closes the iterator: cancels the call
    assert set(confirmed) >= wanted, f"CONFIRMED events missing; saw {[(e.conversion_id, e.state.name) for e in seen]}"
    assert confirmed == {c.conversion_id: c.tx_hash for c in r.conversions}
    ours = [e for e in seen if e.request_id == rid]
    assert ours[0].state is ConversionState.PLANNED, [e.state.name for e in ours]
    assert all(e.chain == CHAIN and e.conversion is not None for e in ours)

    # Resuming from a cursor skips what was seen.
    resumed = next(iter(wb.conversions(after=ours[0].sequence, timeout=10)))
    assert resumed.sequence > ours[0].sequence
    # A chain the sidecar does not serve: NOT_FOUND, raised by the iterator.
    with pytest.raises(NotFound):
        list(wb.conversions(after=cursor, chain="other-chain", timeout=5))
