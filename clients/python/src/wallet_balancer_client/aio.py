"""The asyncio client, on ``grpc.aio``: the surface of
:class:`~wallet_balancer_client.WalletBalancer` with ``async`` methods.

>>> async with AsyncWalletBalancer("127.0.0.1:50051", chain="arbitrum") as wb:  # doctest: +SKIP
...     r = await wb.ensure_eth(10**17, request_id="trade-8812", timeout=2.0)
...     async for ev in wb.conversions(after=0):
...         print(ev.sequence, ev.state.name)

- Cancelling the task that awaits a call cancels the RPC (the sidecar sees
  the call cancelled; a conversion it already started still completes and
  its answer is kept for the request_id).
- ``timeout`` is the whole budget of a call, retries and pauses included.
  UNAVAILABLE and DEADLINE_EXCEEDED are retried (the same request_id) after
  exponential backoff with full jitter while another attempt fits in it.
- :meth:`AsyncWalletBalancer.conversions` is an async iterator that resumes
  for ever (backoff capped at ``stream_max_backoff``) from the last sequence
  it delivered, across sidecar restarts, and never delivers an event twice.

The channel is created with the client, so create the client inside the
event loop that uses it (in a coroutine, or ``async with``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import grpc
import grpc.aio

from . import errors
from ._common import DEFAULT_TARGET, HEALTH_CHECK, SERVICE_NAME, Settings, check_after, env_overrides
from ._proto import wallet_balancer_pb2 as pb
from ._proto import wallet_balancer_pb2_grpc as pb_grpc
from ._retry import RETRYABLE, STREAM_FATAL, Budget, backoff_delay, effective_code, merge_options, retry_pause
from .models import ConversionEvent, EnsureResult, WalletStatus

__all__ = ["AsyncWalletBalancer"]

log = logging.getLogger("wallet_balancer_client")

T = TypeVar("T")


class AsyncWalletBalancer:
    """A ``grpc.aio`` client of one wallet-balancer sidecar.

    The arguments are those of :class:`~wallet_balancer_client.WalletBalancer`;
    ``target`` may also be an existing ``grpc.aio.Channel`` (then the
    caller owns it, e.g. to add interceptors).
    """

    def __init__(
        self,
        target: str | grpc.aio.Channel = DEFAULT_TARGET,
        *,
        chain: str | None = None,
        timeout: float = 10.0,
        ensure_timeout: float = 150.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        stream_max_backoff: float = 2.0,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        wait_for_ready: bool = False,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._settings = Settings.make(
            chain=chain,
            timeout=timeout,
            ensure_timeout=ensure_timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            stream_max_backoff=stream_max_backoff,
            token=token,
            token_file=token_file,
            wait_for_ready=wait_for_ready,
        )
        self._channel: grpc.aio.Channel
        if isinstance(target, str):
            opts = merge_options(options)
            self._channel = (
                grpc.aio.secure_channel(target, credentials, options=opts)
                if credentials is not None
                else grpc.aio.insecure_channel(target, options=opts)
            )
            self._owns_channel = True
            self.target = target
        else:
            self._channel = target
            self._owns_channel = False
            self.target = "<channel>"
        # Built like the sync stub; on an aio channel its methods are async
        # (the type stubs' WalletBalancerAsyncStub, which exists only there).
        self._stub = cast("pb_grpc.WalletBalancerAsyncStub", pb_grpc.WalletBalancerStub(self._channel))

    @classmethod
    def from_env(cls, **overrides: Any) -> AsyncWalletBalancer:
        """Settings from the environment: ``WB_TARGET`` (default
        ``127.0.0.1:50051``), ``WB_CHAIN``, ``WB_AUTH_TOKEN_FILE``;
        keyword arguments win."""
        target, kwargs = env_overrides(overrides)
        return cls(target, **kwargs)

    @property
    def chain(self) -> str | None:
        """The default chain of :meth:`ensure_eth` and :meth:`status`."""
        return self._settings.chain

    @property
    def timeout(self) -> float:
        return self._settings.timeout

    @property
    def ensure_timeout(self) -> float:
        return self._settings.ensure_timeout

    @property
    def retries(self) -> int:
        return self._settings.retries

    # -- lifecycle ---------------------------------------------------------

    async def close(self) -> None:
        """Closes the channel the client created (calls in flight are cancelled)."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncWalletBalancer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncWalletBalancer(target={self.target!r}, chain={self.chain!r})"

    # -- API ---------------------------------------------------------------

    async def ensure_eth(
        self,
        required_wei: int,
        request_id: str | None = None,
        *,
        chain: str | None = None,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> EnsureResult:
        """Makes sure the wallet holds ``required_wei`` plus the chain's gas
        reserve, converting tokens if it does not (EnsureEth).

        ``request_id`` is the idempotency key (a fresh one when None); every
        retry of this call reuses it. ``timeout``: the whole budget of this
        call (default ``ensure_timeout``). Raises what
        :meth:`WalletBalancer.ensure_eth` raises.
        """
        request = self._settings.ensure_request(required_wei, request_id, chain, dry_run)
        response = await self._unary(
            self._stub.EnsureEth,
            request,
            timeout or self._settings.ensure_timeout,
            request_id=request.request_id,
        )
        return EnsureResult.from_pb(response)

    async def status(self, chain: str | None = None, *, timeout: float | None = None) -> WalletStatus:
        """Balances, USD values and what is convertible (GetStatus)."""
        request = pb.GetStatusRequest(chain=self._settings.chain_of(chain))
        response = await self._unary(self._stub.GetStatus, request, timeout or self._settings.timeout)
        return WalletStatus.from_pb(response)

    def conversions(
        self,
        after: int = 0,
        chain: str | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[ConversionEvent, None]:
        """Every state change of every conversion with a sequence greater
        than ``after``, replayed from the journal and then followed live
        (StreamConversions), as an async iterator. ``chain=None`` means
        every chain (not the default chain).

        It ends when ``timeout`` seconds have passed (None: never). A broken
        stream, or one the sidecar ends (it restarts), is resumed for ever
        from the last sequence delivered, with a backoff capped at
        ``stream_max_backoff``; no event is delivered twice. Errors that
        retrying cannot fix (unknown chain, bad token, ...) are raised.
        Cancelling the task cancels the call, and so does closing the
        iterator (``await events.aclose()``; leaving the ``async for`` closes
        it when the iterator is collected).
        """
        check_after(after)
        return self._conversions(after, chain, timeout)

    async def _conversions(
        self, after: int, chain: str | None, timeout: float | None
    ) -> AsyncGenerator[ConversionEvent, None]:
        budget = None if timeout is None else Budget(timeout)
        cursor = after
        failures = 0
        while True:
            remaining = None if budget is None else budget.remaining()
            if remaining is not None and remaining <= 0:
                return
            call = self._stub.StreamConversions(
                pb.StreamConversionsRequest(after_sequence=cursor, chain=chain or ""),
                timeout=remaining,
                metadata=self._settings.metadata,
                wait_for_ready=self._settings.wait_for_ready,
            )
            why: str
            try:
                async for message in call:
                    event = ConversionEvent.from_pb(message)
                    if event.sequence <= cursor:
                        continue  # already delivered before a resume
                    cursor = event.sequence
                    failures = 0
                    yield event
                why = "the sidecar ended the stream"
            except grpc.RpcError as e:
                code = _code(e)
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and budget is not None and budget.remaining() <= 0:
                    return  # the caller's own time limit
                if code in STREAM_FATAL:
                    raise errors.from_rpc_error(e, attempts=failures + 1) from e
                why = code.name
            finally:
                call.cancel()
            failures += 1
            delay = backoff_delay(failures, self._settings.backoff, self._settings.stream_max_backoff)
            if budget is not None and not budget.fits(delay):
                return
            log.info("StreamConversions: %s; resuming after sequence %d in %.2fs", why, cursor, delay)
            await asyncio.sleep(delay)

    async def health(self, service: str = SERVICE_NAME, *, timeout: float | None = None) -> bool:
        """True when gRPC health reports SERVING for ``service`` (readiness:
        every configured chain answers with its chain id)."""
        from grpc_health.v1 import health_pb2

        # Through the channel: the health stub's type stubs lack its methods.
        check = self._channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            r: health_pb2.HealthCheckResponse = await check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout or self._settings.timeout,
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as e:
            if _code(e) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False
            raise errors.from_rpc_error(e) from e
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    async def wait_until_serving(self, timeout: float = 60.0, service: str = SERVICE_NAME) -> None:
        """Waits until :meth:`health` is true; raises :class:`Unavailable` after ``timeout``."""
        budget = Budget(timeout)
        while not await self.health(service, timeout=min(2.0, max(0.1, budget.remaining()))):
            if budget.remaining() <= 0:
                raise errors.Unavailable(
                    grpc.StatusCode.UNAVAILABLE, f"{service} not SERVING at {self.target} after {timeout:.0f}s"
                )
            await asyncio.sleep(0.2)

    # -- internals ---------------------------------------------------------

    async def _unary(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        timeout: float,
        *,
        request_id: str | None = None,
    ) -> T:
        budget = Budget(timeout)
        attempt = 0
        while True:
            attempt += 1
            call = method(
                request,
                timeout=max(budget.remaining(), 0.001),
                metadata=self._settings.metadata,
                wait_for_ready=self._settings.wait_for_ready,
            )
            try:
                return await call
            except grpc.RpcError as e:
                code = effective_code(_code(e), budget.deadline)
                if code in RETRYABLE and attempt <= self._settings.retries:
                    delay = retry_pause(
                        attempt, self._settings.backoff, self._settings.max_backoff, errors.retry_delay_of(e)
                    )
                    if budget.fits(delay):
                        log.info(
                            "%s: %s (attempt %d), retrying in %.2fs%s",
                            type(request).__name__,
                            code.name,
                            attempt,
                            delay,
                            f" with request_id {request_id}" if request_id else "",
                        )
                        await asyncio.sleep(delay)
                        continue
                raise errors.from_rpc_error(e, request_id=request_id, attempts=attempt, code=code) from e
            except asyncio.CancelledError:
                # The caller gave up: so does the call (grpc.aio cancels it
                # too; saying it here does not depend on that).
                _cancel(call)
                raise


def _code(e: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(e, "code", None)
    result = code() if callable(code) else None
    return result if isinstance(result, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _cancel(call: object) -> None:
    cancel = getattr(call, "cancel", None)
    if callable(cancel):
        cancel()
