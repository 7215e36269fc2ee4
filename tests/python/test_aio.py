"""The asyncio client (AsyncWalletBalancer) and the retry rules both clients
share, against the running sidecar and against a scripted fake sidecar.

The fake (a ``grpc.aio`` server in a thread of its own) fails, hangs, ends
or repeats events on cue, which the real sidecar does only by accident: a
stream broken mid-way and resumed, an event sent twice, a handler that
never answers and must see its call cancelled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import grpc
import grpc.aio
import pytest

import wallet_balancer_client as wbc
from wallet_balancer_client import (
    AsyncWalletBalancer,
    ConversionState,
    DeadlineExceeded,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
    Outcome,
    Unavailable,
    WalletBalancer,
)
from wallet_balancer_client._proto import wallet_balancer_pb2 as pb
from wallet_balancer_client._proto import wallet_balancer_pb2_grpc as pb_grpc
from wallet_balancer_client._retry import backoff_delay

CHAIN = "devnet"
SMALL = 10**15
HUGE = 10**24
HANG = "hang"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------------
# Against the real sidecar
# ---------------------------------------------------------------------------


def test_the_async_client_has_the_sync_surface():
    sync = {n for n in dir(WalletBalancer) if not n.startswith("_")}
    aio = {n for n in dir(AsyncWalletBalancer) if not n.startswith("_")}
    assert sync == aio, sync ^ aio
    assert wbc.AsyncWalletBalancer is AsyncWalletBalancer


def test_async_status_ensure_dry_run_and_errors(sidecar):
    async def scenario() -> None:
        async with AsyncWalletBalancer(sidecar.grpc_target, chain=CHAIN) as wb:
            assert await wb.health() is True
            await wb.wait_until_serving(timeout=5)
            s = await wb.status()
            assert s.chain == CHAIN and s.chain_id == 31337 and isinstance(s.total_value_usd, Decimal)
            assert s.wallet_address.lower() == sidecar.wallet_address.lower()

            # Concurrent calls on one channel.
            results = await asyncio.gather(*(wb.ensure_eth(SMALL) for _ in range(5)))
            assert all(r.outcome is Outcome.SUFFICIENT for r in results)
            assert len({r.request_id for r in results}) == 5

            plan = await wb.ensure_eth(s.eth_balance_wei, dry_run=True)
            assert plan.outcome is Outcome.PLANNED and plan.conversions
            assert all(c.state is ConversionState.PLANNED for c in plan.conversions)

            with pytest.raises(InsufficientFunds) as e:
                await wb.ensure_eth(HUGE, "pytest-aio-short")
            assert e.value.request_id == "pytest-aio-short" and e.value.shortage_wei

            with pytest.raises(InvalidArgument) as bad:
                await wb.ensure_eth(SMALL, "not a valid id!")
            assert bad.value.field == "request_id"
            with pytest.raises(NotFound):
                await wb.status("nowhere")
            with pytest.raises(TypeError):
                await wb.ensure_eth(0.1)  # type: ignore[arg-type]

            # The journal replayed, then followed until the timeout.
            events = [ev async for ev in wb.conversions(after=0, timeout=1.0)]
            assert [e.sequence for e in events] == sorted({e.sequence for e in events})
            with pytest.raises(NotFound):
                async for _ in wb.conversions(chain="other-chain", timeout=5):
                    pass

    run(scenario())


def test_async_from_env(sidecar, monkeypatch):
    monkeypatch.setenv("WB_TARGET", sidecar.grpc_target)
    monkeypatch.setenv("WB_CHAIN", CHAIN)

    async def scenario() -> None:
        async with AsyncWalletBalancer.from_env(timeout=5) as wb:
            assert wb.chain == CHAIN and wb.timeout == 5
            assert (await wb.status()).chain == CHAIN

    run(scenario())


# ---------------------------------------------------------------------------
# The scripted fake sidecar
# ---------------------------------------------------------------------------


def _event(seq: int) -> pb.ConversionEvent:
    return pb.ConversionEvent(
        sequence=seq,
        chain=CHAIN,
        request_id=f"r{seq}",
        conversion_id=f"c{seq}",
        state=pb.CONVERSION_STATE_PLANNED,
    )


class RetryAfter:
    """An EnsureEth step: UNAVAILABLE with the server's RetryInfo delay, as
    the sidecar answers IN_PROGRESS, STUCK, a fee cap..."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def _abort_with_retry_info(context: grpc.ServicerContext, seconds: float) -> None:
    from google.protobuf import any_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
    from grpc_status import rpc_status

    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(int(seconds * 1000))
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="conversion in progress", details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


class Fake(pb_grpc.WalletBalancerServicer):
    """Scripted answers. ``streams``: per StreamConversions call (the last
    repeats), the sequences to send and how to end (a code to abort with,
    None for a clean end, HANG to stay open). ``ensures``: per EnsureEth
    call, a code to abort with (or ``(seconds, code)``: after a while),
    HANG, or (when the list is exhausted) an answer. A hanging handler returns once its call is over (the client
    cancelled it, or its deadline passed)."""

    def __init__(self) -> None:
        self.streams: list[tuple[list[int], Any]] = [([], HANG)]
        self.stream_cursors: list[int] = []
        self.ensures: list[Any] = []
        self.ensure_ids: list[str] = []
        self.cancelled = threading.Event()
        #: Set when a hanging stream's call is over (closed by the client).
        self.stream_closed = threading.Event()
        self._lock = threading.Lock()

    @staticmethod
    def _hang(context: grpc.ServicerContext) -> None:
        while context.is_active():
            time.sleep(0.005)

    def StreamConversions(self, request: Any, context: grpc.ServicerContext) -> Iterator[pb.ConversionEvent]:
        with self._lock:
            i = len(self.stream_cursors)
            self.stream_cursors.append(request.after_sequence)
            sequences, end = self.streams[min(i, len(self.streams) - 1)]
        if end == HANG:
            # Called when the call is over, even if the server never pulls
            # the next message from this generator again.
            context.add_callback(self.stream_closed.set)
        for seq in sequences:
            yield _event(seq)
        if end == HANG:
            self._hang(context)
        elif end is not None:
            context.abort(end, "scripted")

    def EnsureEth(self, request: Any, context: grpc.ServicerContext) -> pb.EnsureEthResponse:
        with self._lock:
            self.ensure_ids.append(request.request_id)
            step = self.ensures.pop(0) if self.ensures else None
        if isinstance(step, RetryAfter):
            _abort_with_retry_info(context, step.seconds)
        if isinstance(step, tuple):  # (seconds, code): fail after a while
            time.sleep(step[0])
            step = step[1]
        if step == HANG:
            self._hang(context)
            if context.time_remaining() is None or context.time_remaining() > 0.05:
                self.cancelled.set()  # over before its deadline: the client cancelled it
            return pb.EnsureEthResponse()
        if step is not None:
            context.abort(step, "scripted")
        zero = "0"
        return pb.EnsureEthResponse(
            chain=request.chain,
            request_id=request.request_id,
            outcome=pb.ENSURE_OUTCOME_SUFFICIENT,
            eth_before_wei=zero,
            eth_after_wei=zero,
            required_wei=request.required_wei,
            gas_reserve_wei=zero,
            need_wei=zero,
            shortage_wei=zero,
            target_eth_out_wei=zero,
            total_eth_out_wei=zero,
            total_gas_cost_wei=zero,
        )


@pytest.fixture
def fake() -> Iterator[tuple[Fake, str]]:
    """A :class:`Fake` served on 127.0.0.1 (a grpc thread-pool server)."""
    servicer = Fake()
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_WalletBalancerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait(10)


def _aio(target: str, **kw: Any) -> AsyncWalletBalancer:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("stream_max_backoff", 0.05)
    return AsyncWalletBalancer(target, chain=CHAIN, **kw)


def _sync(target: str, **kw: Any) -> WalletBalancer:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("stream_max_backoff", 0.05)
    return WalletBalancer(target, chain=CHAIN, **kw)


# A stream that breaks (UNAVAILABLE), is ended by the server, repeats what
# was delivered, breaks again (INTERNAL), then stays open.
BROKEN_STREAMS: list[tuple[list[int], Any]] = [
    ([1, 2, 3], grpc.StatusCode.UNAVAILABLE),
    ([2, 3, 4, 5], None),
    ([6], grpc.StatusCode.INTERNAL),
    ([5, 7], HANG),
]


def test_async_stream_resumes_from_the_last_delivered_and_never_repeats(fake):
    servicer, target = fake
    servicer.streams = BROKEN_STREAMS

    async def scenario() -> list[int]:
        async with _aio(target) as wb:
            got = []
            async for ev in wb.conversions(after=0):
                got.append(ev.sequence)
                if ev.sequence == 7:
                    break
            return got

    assert run(scenario()) == [1, 2, 3, 4, 5, 6, 7]
    assert servicer.stream_cursors == [0, 3, 5, 6]


def test_sync_stream_resumes_from_the_last_delivered_and_never_repeats(fake):
    servicer, target = fake
    servicer.streams = BROKEN_STREAMS
    got = []
    with _sync(target) as wb:
        for ev in wb.conversions(after=0):
            got.append(ev.sequence)
            if ev.sequence == 7:
                break
    assert got == [1, 2, 3, 4, 5, 6, 7]
    assert servicer.stream_cursors == [0, 3, 5, 6]


def test_the_stream_resumes_for_ever_not_a_few_times(fake):
    servicer, target = fake
    # Twenty failures in a row (more than `retries`), then an event.
    servicer.streams = [([], grpc.StatusCode.UNAVAILABLE)] * 20 + [([1], HANG)]

    async def scenario() -> int:
        async with _aio(target, retries=1) as wb:
            async for ev in wb.conversions():
                return ev.sequence
        raise AssertionError("the stream ended")

    assert run(scenario()) == 1
    assert len(servicer.stream_cursors) == 21


def test_the_stream_backoff_is_capped(fake):
    servicer, target = fake
    servicer.streams = [([], grpc.StatusCode.UNAVAILABLE)] * 12 + [([1], HANG)]

    async def scenario() -> float:
        async with _aio(target, backoff=0.05, stream_max_backoff=0.1) as wb:
            started = time.monotonic()
            async for _ in wb.conversions():
                return time.monotonic() - started
        raise AssertionError("the stream ended")

    # Uncapped, twelve doublings from 50 ms would take minutes.
    assert run(scenario()) < 3.0


def test_a_stream_error_retrying_cannot_fix_is_raised(fake):
    servicer, target = fake
    servicer.streams = [([1], grpc.StatusCode.NOT_FOUND)]

    async def scenario() -> list[int]:
        got = []
        async with _aio(target) as wb:
            with pytest.raises(NotFound):
                async for ev in wb.conversions():
                    got.append(ev.sequence)
        return got

    assert run(scenario()) == [1]
    assert servicer.stream_cursors == [0]


def test_a_stream_timeout_ends_it(fake):
    servicer, target = fake
    servicer.streams = [([1, 2], HANG)]

    async def scenario() -> tuple[list[int], float]:
        async with _aio(target) as wb:
            started = time.monotonic()
            got = [ev.sequence async for ev in wb.conversions(timeout=0.5)]
            return got, time.monotonic() - started

    got, elapsed = run(scenario())
    assert got == [1, 2] and 0.5 <= elapsed < 0.7, (got, elapsed)


def test_cancelling_the_task_cancels_the_rpc(fake):
    servicer, target = fake
    servicer.ensures = [HANG]

    async def scenario() -> None:
        async with _aio(target) as wb:
            task = asyncio.create_task(wb.ensure_eth(SMALL, "pytest-cancel"))
            await asyncio.sleep(0.3)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Seen by the server while the channel is still open (closing
            # it would cancel every call anyway).
            seen = await asyncio.to_thread(servicer.cancelled.wait, 2)
            assert seen, "the server never saw the call cancelled"

    run(scenario())
    assert servicer.ensure_ids == ["pytest-cancel"]


def test_closing_the_stream_cancels_its_call(fake):
    servicer, target = fake
    servicer.streams = [([1], HANG)]

    async def scenario() -> None:
        async with _aio(target) as wb:
            events = wb.conversions()
            assert (await events.__anext__()).sequence == 1
            await events.aclose()
            # Seen while the channel is still open.
            closed = await asyncio.to_thread(servicer.stream_closed.wait, 2)
            assert closed, "the server's stream call was not cancelled"

    run(scenario())


def test_async_retries_reuse_the_request_id(fake):
    servicer, target = fake
    servicer.ensures = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]

    async def scenario() -> wbc.EnsureResult:
        async with _aio(target, retries=3) as wb:
            return await wb.ensure_eth(SMALL)

    r = run(scenario())
    assert r.outcome is Outcome.SUFFICIENT
    assert len(servicer.ensure_ids) == 3 and set(servicer.ensure_ids) == {r.request_id}


def test_async_non_retryable_errors_are_not_retried(fake):
    servicer, target = fake
    servicer.ensures = [grpc.StatusCode.FAILED_PRECONDITION]

    async def scenario() -> None:
        async with _aio(target, retries=3) as wb:
            with pytest.raises(wbc.FailedPrecondition) as e:
                await wb.ensure_eth(SMALL, "pytest-fp")
            assert e.value.attempts == 1

    run(scenario())
    assert servicer.ensure_ids == ["pytest-fp"]


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_one_deadline_for_every_attempt(fake, client):
    # The first attempt fails after 0.2 s; the retry hangs: it gets what is
    # left of the budget, not a budget of its own.
    servicer, target = fake
    servicer.ensures = [(0.2, grpc.StatusCode.UNAVAILABLE)] + [HANG] * 10
    started = time.monotonic()
    if client == "aio":

        async def scenario() -> None:
            async with _aio(target, retries=5) as wb:
                await wb.ensure_eth(SMALL, "pytest-budget", timeout=0.5)

        with pytest.raises(DeadlineExceeded) as e:
            run(scenario())
    else:
        with _sync(target, retries=5) as wb, pytest.raises(DeadlineExceeded) as e:
            wb.ensure_eth(SMALL, "pytest-budget", timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.6, f"a 0.5 s budget took {elapsed:.3f} s"
    assert e.value.attempts == 2 and servicer.ensure_ids == ["pytest-budget"] * 2


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_unavailable_is_retried_within_the_budget(fake, client):
    servicer, target = fake
    servicer.ensures = [grpc.StatusCode.UNAVAILABLE] * 1000
    started = time.monotonic()
    if client == "aio":

        async def scenario() -> None:
            async with _aio(target, retries=1000, backoff=0.02, max_backoff=0.1) as wb:
                await wb.ensure_eth(SMALL, "pytest-unavailable", timeout=0.5)

        with pytest.raises(Unavailable) as e:
            run(scenario())
    else:
        with _sync(target, retries=1000, backoff=0.02, max_backoff=0.1) as wb, pytest.raises(Unavailable) as e:
            wb.ensure_eth(SMALL, "pytest-unavailable", timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.55, f"a 0.5 s budget took {elapsed:.3f} s"
    assert e.value.attempts == len(servicer.ensure_ids) > 3
    assert set(servicer.ensure_ids) == {"pytest-unavailable"}


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_a_retry_waits_at_least_the_servers_retry_delay(fake, client):
    # The sidecar's RetryInfo says 0.4 s; the client's own backoff would
    # retry after at most 0.01 s.
    servicer, target = fake
    servicer.ensures = [RetryAfter(0.4)]
    started = time.monotonic()
    if client == "aio":

        async def scenario() -> wbc.EnsureResult:
            async with _aio(target, retries=3, backoff=0.01) as wb:
                return await wb.ensure_eth(SMALL, "pytest-retry-info", timeout=5)

        r = run(scenario())
    else:
        with _sync(target, retries=3, backoff=0.01) as wb:
            r = wb.ensure_eth(SMALL, "pytest-retry-info", timeout=5)
    elapsed = time.monotonic() - started
    assert r.outcome is Outcome.SUFFICIENT
    assert servicer.ensure_ids == ["pytest-retry-info"] * 2
    assert elapsed >= 0.4, f"retried after {elapsed:.3f} s, before the server's 0.4 s"


@pytest.mark.parametrize("client", ["aio", "sync"])
def test_a_retry_delay_beyond_the_budget_gives_up_at_once(fake, client):
    servicer, target = fake
    servicer.ensures = [RetryAfter(5.0)]
    started = time.monotonic()
    if client == "aio":

        async def scenario() -> None:
            async with _aio(target, retries=3, backoff=0.01) as wb:
                await wb.ensure_eth(SMALL, "pytest-retry-late", timeout=1.0)

        with pytest.raises(Unavailable) as e:
            run(scenario())
    else:
        with _sync(target, retries=3, backoff=0.01) as wb, pytest.raises(Unavailable) as e:
            wb.ensure_eth(SMALL, "pytest-retry-late", timeout=1.0)
    assert e.value.attempts == 1 and e.value.retry_delay == 5.0
    assert time.monotonic() - started < 0.5, "never sleeps only to fail"
    assert servicer.ensure_ids == ["pytest-retry-late"]


def test_backoff_is_exponential_capped_and_jittered():
    for attempt in range(1, 12):
        cap = min(1.0, 0.1 * 2 ** (attempt - 1))
        samples = [backoff_delay(attempt, 0.1, 1.0) for _ in range(200)]
        assert all(0 <= d <= cap for d in samples)
        assert max(samples) > 0.5 * cap and len(set(samples)) > 100, "no jitter"
