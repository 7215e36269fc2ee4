"""The sync client: a thin, typed wrapper over the generated stubs.

Deadlines: every call has ONE deadline, ``timeout`` seconds from the moment
it is made, retries included (EnsureEth defaults to ``ensure_timeout``, long
enough for a conversion to confirm). Retries: UNAVAILABLE and
DEADLINE_EXCEEDED are retried up to ``retries`` times with exponential
backoff and full jitter (never sooner than the server's RetryInfo delay),
while another attempt fits in the deadline. An
EnsureEth retry reuses the request_id of the first attempt, which is safe:
the sidecar is idempotent on request_id (a retry returns the first result,
or waits for the one in flight, and never converts twice). See ``_retry``.

:class:`~wallet_balancer_client.AsyncWalletBalancer` is the same client on
``grpc.aio``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from . import errors
from ._common import DEFAULT_TARGET, HEALTH_CHECK, SERVICE_NAME, Settings, check_after, env_overrides, new_request_id
from ._proto import wallet_balancer_pb2 as pb
from ._proto import wallet_balancer_pb2_grpc as pb_grpc
from ._retry import RETRYABLE, STREAM_FATAL, Budget, backoff_delay, effective_code, merge_options, retry_pause
from .models import ConversionEvent, EnsureResult, WalletStatus

__all__ = ["DEFAULT_TARGET", "SERVICE_NAME", "WalletBalancer", "new_request_id"]

log = logging.getLogger("wallet_balancer_client")

T = TypeVar("T")


class WalletBalancer:
    """A client of one wallet-balancer sidecar.

    ``target`` is ``host:port`` (default ``127.0.0.1:50051``, the sidecar in
    the same pod) or an existing ``grpc.Channel`` (then the caller owns it).
    ``chain`` is the default chain of :meth:`ensure_eth` and :meth:`status`.
    ``timeout`` / ``ensure_timeout``: the whole time budget of a call,
    retries included. ``retries``: at most this many retries of a call
    (UNAVAILABLE, DEADLINE_EXCEEDED), within its budget; ``backoff`` /
    ``max_backoff``: the first and the largest pause between attempts
    (exponential, full jitter). ``stream_max_backoff``: the largest pause
    before :meth:`conversions` resumes a broken stream (it resumes for
    ever). ``token``/``token_file``: bearer token sent as ``authorization:
    Bearer`` when the sidecar requires one. ``credentials``: TLS (or mTLS)
    channel credentials; plaintext otherwise. ``wait_for_ready``: calls wait
    for the sidecar to accept connections (within their deadline) instead
    of failing fast with UNAVAILABLE, e.g. while the pod starts.
    ``options``: gRPC channel options, over the client's defaults
    (``_retry.CHANNEL_DEFAULTS``; see the README for keepalive settings
    when the sidecar is not on loopback).
    """

    def __init__(
        self,
        target: str | grpc.Channel = DEFAULT_TARGET,
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
        self._channel: grpc.Channel
        if isinstance(target, str):
            opts = merge_options(options)
            self._channel = (
                grpc.secure_channel(target, credentials, options=opts)
                if credentials is not None
                else grpc.insecure_channel(target, options=opts)
            )
            self._owns_channel = True
            self.target = target
        else:
            self._channel = target
            self._owns_channel = False
            self.target = "<channel>"
        self._stub = pb_grpc.WalletBalancerStub(self._channel)

    @classmethod
    def from_env(cls, **overrides: Any) -> WalletBalancer:
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

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> WalletBalancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WalletBalancer(target={self.target!r}, chain={self.chain!r})"

    # -- API ---------------------------------------------------------------

    def ensure_eth(
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
        call (default ``ensure_timeout``). Raises :class:`InsufficientFunds`,
        :class:`PriceDeviation` (both :class:`FailedPrecondition`: skip the
        trade), :class:`LimitExceeded`, :class:`InvalidArgument`,
        :class:`DeadlineExceeded`, ...
        """
        request = self._settings.ensure_request(required_wei, request_id, chain, dry_run)
        response = self._unary(
            self._stub.EnsureEth,
            request,
            timeout or self._settings.ensure_timeout,
            request_id=request.request_id,
        )
        return EnsureResult.from_pb(response)

    def status(self, chain: str | None = None, *, timeout: float | None = None) -> WalletStatus:
        """Balances, USD values and what is convertible (GetStatus)."""
        request = pb.GetStatusRequest(chain=self._settings.chain_of(chain))
        return WalletStatus.from_pb(self._unary(self._stub.GetStatus, request, timeout or self._settings.timeout))

    def conversions(
        self,
        after: int = 0,
        chain: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Iterator[ConversionEvent]:
        """Every state change of every conversion with a sequence greater
        than ``after``, replayed from the journal and then followed live
        (StreamConversions). ``chain=None`` means every chain (not the
        default chain).

        The iterator ends when ``timeout`` seconds have passed (None: it
        never ends). A broken stream, or one the sidecar ends (it restarts),
        is resumed for ever from the last sequence delivered, with a backoff
        capped at ``stream_max_backoff``; no event is delivered twice. Errors
        that retrying cannot fix (unknown chain, bad token, ...) are raised.
        Closing the iterator (``break``) cancels the call.
        """
        check_after(after)
        return self._conversions(after, chain, timeout)

    def _conversions(self, after: int, chain: str | None, timeout: float | None) -> Iterator[ConversionEvent]:
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
                for message in call:
                    event = ConversionEvent.from_pb(message)
                    if event.sequence <= cursor:
                        continue  # already delivered before a resume
                    cursor = event.sequence
                    failures = 0
                    yield event
                why = "the sidecar ended the stream"
            except grpc.RpcError as e:
                code = e.code()
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
            time.sleep(delay)

    def health(self, service: str = SERVICE_NAME, *, timeout: float | None = None) -> bool:
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
            r: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout or self._settings.timeout,
                metadata=self._settings.metadata,
            )
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False
            raise errors.from_rpc_error(e) from e
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    def wait_until_serving(self, timeout: float = 60.0, service: str = SERVICE_NAME) -> None:
        """Blocks until :meth:`health` is true; raises :class:`Unavailable` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.health(service, timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise errors.Unavailable(
                    grpc.StatusCode.UNAVAILABLE, f"{service} not SERVING at {self.target} after {timeout:.0f}s"
                )
            time.sleep(0.2)

    # -- internals ---------------------------------------------------------

    def _unary(
        self,
        method: Callable[..., T],
        request: Any,
        timeout: float,
        *,
        request_id: str | None = None,
    ) -> T:
        budget = Budget(timeout)
        attempt = 0
        while True:
            attempt += 1
            attempt_deadline = budget.deadline
            try:
                return method(
                    request,
                    timeout=max(budget.remaining(), 0.001),
                    metadata=self._settings.metadata,
                    wait_for_ready=self._settings.wait_for_ready,
                )
            except grpc.RpcError as e:
                code = effective_code(e.code(), attempt_deadline)
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
                        time.sleep(delay)
                        continue
                raise errors.from_rpc_error(e, request_id=request_id, attempts=attempt, code=code) from e
