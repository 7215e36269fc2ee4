"""The client: a thin, typed wrapper over the generated stubs.

Deadlines: every call has one (``timeout`` seconds per attempt; EnsureEth
defaults to ``ensure_timeout``, long enough for a conversion to confirm).
Retries: UNAVAILABLE and DEADLINE_EXCEEDED are retried ``retries`` times with
exponential backoff and jitter. An EnsureEth retry reuses the request_id of
the first attempt, which is safe: the sidecar is idempotent on request_id (a
retry returns the first result, or waits for the one in flight, and never
converts twice).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from . import errors
from ._proto import wallet_balancer_pb2 as pb
from ._proto import wallet_balancer_pb2_grpc as pb_grpc
from .models import ConversionEvent, EnsureResult, WalletStatus

__all__ = ["DEFAULT_TARGET", "SERVICE_NAME", "WalletBalancer", "new_request_id"]

log = logging.getLogger("wallet_balancer_client")

#: Where the sidecar listens inside the pod.
DEFAULT_TARGET = "127.0.0.1:50051"
#: The service name gRPC health reports the sidecar's readiness under.
SERVICE_NAME = "walletbalancer.v1.WalletBalancer"

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

T = TypeVar("T")


def new_request_id(prefix: str = "py") -> str:
    """A fresh idempotency key (fits the API's ``[A-Za-z0-9._:-]{1,128}``)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def _check_wei(name: str, value: object) -> int:
    # Money is never a float (nor a bool, which is an int subclass).
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of wei, not {type(value).__name__}")
    return value


class WalletBalancer:
    """A client of one wallet-balancer sidecar.

    ``target`` is ``host:port`` (default ``127.0.0.1:50051``, the sidecar in
    the same pod) or an existing ``grpc.Channel`` (then the caller owns it).
    ``chain`` is the default chain of :meth:`ensure_eth` and :meth:`status`.
    ``token``/``token_file``: bearer token sent as ``authorization: Bearer``
    when the sidecar requires one. ``credentials``: TLS (or mTLS) channel
    credentials; plaintext otherwise. ``wait_for_ready``: calls wait for the
    sidecar to accept connections (within their deadline) instead of failing
    fast with UNAVAILABLE, e.g. while the pod starts.
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
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        wait_for_ready: bool = False,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if timeout <= 0 or ensure_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if token is not None and token_file is not None:
            raise ValueError("give token or token_file, not both")
        if token_file is not None:
            token = Path(token_file).read_text().strip()
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("the bearer token must be non-empty, without whitespace")

        self.chain = chain
        self.timeout = timeout
        self.ensure_timeout = ensure_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.wait_for_ready = wait_for_ready
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token is not None else ()
        )
        if isinstance(target, str):
            # The sidecar is local: never route it through an HTTP proxy from the environment.
            opts = [("grpc.enable_http_proxy", 0), *options]
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
        kwargs: dict[str, Any] = {}
        if os.environ.get("WB_CHAIN"):
            kwargs["chain"] = os.environ["WB_CHAIN"]
        if os.environ.get("WB_AUTH_TOKEN_FILE"):
            kwargs["token_file"] = os.environ["WB_AUTH_TOKEN_FILE"]
        kwargs.update(overrides)
        target = kwargs.pop("target", os.environ.get("WB_TARGET") or DEFAULT_TARGET)
        return cls(target, **kwargs)

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
        retry of this call reuses it. Raises :class:`InsufficientFunds`,
        :class:`PriceDeviation` (both :class:`FailedPrecondition`: skip the
        trade), :class:`LimitExceeded`, :class:`InvalidArgument`, ...
        """
        _check_wei("required_wei", required_wei)
        rid = request_id if request_id is not None else new_request_id()
        request = pb.EnsureEthRequest(
            chain=self._chain(chain),
            required_wei=str(required_wei),
            request_id=rid,
            dry_run=dry_run,
        )
        response = self._unary(
            self._stub.EnsureEth, request, timeout or self.ensure_timeout, request_id=rid
        )
        return EnsureResult.from_pb(response)

    def status(self, chain: str | None = None, *, timeout: float | None = None) -> WalletStatus:
        """Balances, USD values and what is convertible (GetStatus)."""
        request = pb.GetStatusRequest(chain=self._chain(chain))
        return WalletStatus.from_pb(self._unary(self._stub.GetStatus, request, timeout or self.timeout))

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

        The iterator ends when ``timeout`` seconds have passed (None: never)
        or when the sidecar ends the stream (it shuts down). A broken
        connection is resumed from the last sequence seen, up to ``retries``
        times in a row. Closing the iterator (``break``) cancels the call.
        """
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError("after must be a non-negative int sequence number")
        return self._conversions(after, chain, timeout)

    def _conversions(self, after: int, chain: str | None, timeout: float | None) -> Iterator[ConversionEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = after
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            call = self._stub.StreamConversions(
                pb.StreamConversionsRequest(after_sequence=cursor, chain=chain or ""),
                timeout=remaining,
                metadata=self._metadata,
                wait_for_ready=self.wait_for_ready,
            )
            try:
                for message in call:
                    event = ConversionEvent.from_pb(message)
                    if event.sequence <= cursor:
                        continue  # already seen before a resume
                    cursor = event.sequence
                    failures = 0
                    yield event
                return
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    return  # the caller's own time limit
                if code in RETRYABLE and failures < self.retries:
                    failures += 1
                    log.info("StreamConversions: %s, resuming after sequence %d", code.name, cursor)
                    time.sleep(self._delay(failures))
                    continue
                raise errors.from_rpc_error(e, attempts=failures + 1) from e
            finally:
                call.cancel()

    def health(self, service: str = SERVICE_NAME, *, timeout: float | None = None) -> bool:
        """True when gRPC health reports SERVING for ``service`` (readiness:
        every configured chain answers with its chain id)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False
            raise errors.from_rpc_error(e) from e
        return r.status == health_pb2.HealthCheckResponse.SERVING

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

    def _chain(self, chain: str | None) -> str:
        c = chain if chain is not None else self.chain
        if c is None:
            raise ValueError("no chain: pass chain=... or set WalletBalancer(chain=...)")
        return c

    def _delay(self, attempt: int) -> float:
        # Exponential backoff with full jitter.
        return random.uniform(0, min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))

    def _unary(
        self,
        method: Callable[..., T],
        request: Any,
        timeout: float,
        *,
        request_id: str | None = None,
    ) -> T:
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                return method(
                    request,
                    timeout=timeout,
                    metadata=self._metadata,
                    wait_for_ready=self.wait_for_ready,
                )
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.CANCELLED and time.monotonic() - started >= timeout:
                    # The server saw the deadline (grpc-timeout) first: tonic
                    # answers CANCELLED "Timeout expired". It is our deadline.
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                if code in RETRYABLE and attempt <= self.retries:
                    delay = self._delay(attempt)
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
