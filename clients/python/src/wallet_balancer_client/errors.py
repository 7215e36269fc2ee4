"""gRPC statuses of the sidecar as Python exceptions.

Every exception is a :class:`WalletBalancerError` carrying the gRPC ``code``,
the status ``message`` and, when the server attached one, the
``google.rpc.ErrorInfo`` (``reason``, ``domain``, ``metadata``) it puts in
``grpc-status-details-bin``; INVALID_ARGUMENT also carries the
``google.rpc.BadRequest`` field violations. ``retry_delay`` is the
``google.rpc.RetryInfo`` delay in seconds when the server says waiting
helps (UNAVAILABLE; HOURLY_LIMIT until the rolling hour frees enough),
else ``None``.

The class follows the code, refined by the ErrorInfo reason:

==========================  ===================================================
code                        class
==========================  ===================================================
INVALID_ARGUMENT            :class:`InvalidArgument`
NOT_FOUND                   :class:`NotFound` (chain not configured)
FAILED_PRECONDITION         :class:`FailedPrecondition`; reason
                            ``INSUFFICIENT_FUNDS`` → :class:`InsufficientFunds`,
                            ``PRICE_DEVIATION`` → :class:`PriceDeviation`,
                            ``PRICE_FEED_UNUSABLE`` → :class:`PriceFeedUnusable`,
                            ``SEQUENCER_DOWN`` → :class:`SequencerDown`,
                            ``SIMULATION_REVERTED`` → :class:`SimulationReverted`
RESOURCE_EXHAUSTED          :class:`LimitExceeded` (``REQUEST_LIMIT`` / ``HOURLY_LIMIT``)
UNAVAILABLE                 :class:`Unavailable` (retried)
DEADLINE_EXCEEDED           :class:`DeadlineExceeded` (retried)
ABORTED                     :class:`Aborted`
ALREADY_EXISTS              :class:`IdempotencyConflict` (request_id reused with other parameters)
UNAUTHENTICATED             :class:`Unauthenticated`
PERMISSION_DENIED           :class:`PermissionDenied`
others                      :class:`WalletBalancerError`
==========================  ===================================================
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc

__all__ = [
    "Aborted",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidArgument",
    "LimitExceeded",
    "NotFound",
    "PermissionDenied",
    "PriceDeviation",
    "PriceFeedUnusable",
    "SequencerDown",
    "SimulationReverted",
    "Unauthenticated",
    "Unavailable",
    "WalletBalancerError",
    "from_rpc_error",
]

ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


class FieldViolation(tuple[str, str]):
    """``(field, description)`` of a ``google.rpc.BadRequest``."""

    __slots__ = ()

    def __new__(cls, field: str, description: str) -> FieldViolation:
        return super().__new__(cls, (field, description))

    @property
    def field(self) -> str:
        return self[0]

    @property
    def description(self) -> str:
        return self[1]


class WalletBalancerError(Exception):
    """A failed call. ``attempts`` counts the tries the client made."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str | None = None,
        domain: str | None = None,
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        request_id: str | None = None,
        attempts: int = 1,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations = field_violations
        self.request_id = request_id
        self.attempts = attempts
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        reason = f" [{self.reason}]" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, metadata={self.metadata!r})"
        )

    # Typed accessors of metadata figures (wei as int, USD as Decimal).
    def _wei(self, key: str) -> int | None:
        v = self.metadata.get(key)
        return int(v) if v is not None and v.isdigit() else None

    def _usd(self, key: str) -> Decimal | None:
        v = self.metadata.get(key)
        try:
            return Decimal(v) if v is not None else None
        except ArithmeticError:
            return None


class InvalidArgument(WalletBalancerError):
    """A malformed field; the message starts with the field's name."""

    @property
    def field(self) -> str | None:
        if self.field_violations:
            return self.field_violations[0].field
        head = self.message.split(":", 1)[0].strip()
        return head or None


class NotFound(WalletBalancerError):
    """The chain is not configured in the sidecar."""


class FailedPrecondition(WalletBalancerError):
    """The wallet or the market cannot serve the request now: skip the trade."""


class InsufficientFunds(FailedPrecondition):
    """The wallet cannot cover the need even after converting everything convertible."""

    @property
    def shortage_wei(self) -> int | None:
        return self._wei("shortage_wei")

    @property
    def shortage_usd(self) -> Decimal | None:
        return self._usd("shortage_usd")

    @property
    def convertible_wei(self) -> int | None:
        return self._wei("convertible_wei")

    @property
    def convertible_usd(self) -> Decimal | None:
        return self._usd("convertible_usd")


class PriceDeviation(FailedPrecondition):
    """The best pool price is worse than the oracle by more than the slippage bound."""

    @property
    def token(self) -> str | None:
        return self.metadata.get("token")

    @property
    def quoted_usd_per_token(self) -> Decimal | None:
        return self._usd("quoted_usd_per_token")

    @property
    def oracle_usd_per_token(self) -> Decimal | None:
        return self._usd("oracle_usd_per_token")


class PriceFeedUnusable(FailedPrecondition):
    """A price feed is stale or non-positive."""


class SequencerDown(FailedPrecondition):
    """The L2 sequencer is down (or back up for less than the grace period)."""


class SimulationReverted(FailedPrecondition):
    """A conversion's simulation reverted; nothing was sent."""


class LimitExceeded(WalletBalancerError):
    """A spend limit: ``reason`` is ``REQUEST_LIMIT`` or ``HOURLY_LIMIT``."""

    @property
    def requested_usd(self) -> Decimal | None:
        return self._usd("requested_usd")

    @property
    def limit_usd(self) -> Decimal | None:
        """The per-request limit (``REQUEST_LIMIT``)."""
        return self._usd("limit_usd")

    @property
    def remaining_usd(self) -> Decimal | None:
        """What is left of the rolling hour's budget (``HOURLY_LIMIT``)."""
        return self._usd("remaining_usd")


class Unavailable(WalletBalancerError):
    """The sidecar, or every RPC endpoint of the chain, did not answer."""


class DeadlineExceeded(WalletBalancerError):
    """The call's deadline passed, or (reason ``NOT_CONFIRMED``) a receipt was not seen in time."""


class Aborted(WalletBalancerError):
    """A sent transaction reverted, or the wallet is still short after converting."""


class IdempotencyConflict(WalletBalancerError):
    """The request_id was already used with other parameters."""


class Unauthenticated(WalletBalancerError):
    """Missing or wrong bearer token."""


class PermissionDenied(WalletBalancerError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[WalletBalancerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.ALREADY_EXISTS: IdempotencyConflict,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}

_BY_REASON: dict[tuple[grpc.StatusCode, str], type[WalletBalancerError]] = {
    (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"): InsufficientFunds,
    (grpc.StatusCode.FAILED_PRECONDITION, "PRICE_DEVIATION"): PriceDeviation,
    (grpc.StatusCode.FAILED_PRECONDITION, "PRICE_FEED_UNUSABLE"): PriceFeedUnusable,
    (grpc.StatusCode.FAILED_PRECONDITION, "SEQUENCER_DOWN"): SequencerDown,
    (grpc.StatusCode.FAILED_PRECONDITION, "SIMULATION_REVERTED"): SimulationReverted,
}


class _Details:
    """What the status details say (empty when absent or undecodable)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.domain: str | None = None
        self.metadata: dict[str, str] = {}
        self.violations: tuple[FieldViolation, ...] = ()
        self.retry_delay: float | None = None


def _details(call: Any) -> _Details:
    """ErrorInfo (reason, domain, metadata), BadRequest violations and the
    RetryInfo delay from the call's ``grpc-status-details-bin`` trailer;
    empty when absent or undecodable (a proxy may strip or mangle it: the
    code still stands)."""
    out = _Details()
    try:
        # googleapis-common-protos ships no type stubs.
        from google.rpc import error_details_pb2  # type: ignore[import-untyped]
        from grpc_status import rpc_status

        status = rpc_status.from_call(call)
    except Exception:  # noqa: BLE001 - details are best effort
        return out
    if status is None:
        return out
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.type_url == ERROR_INFO_TYPE and out.reason is None:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                out.reason, out.domain, out.metadata = info.reason or None, info.domain or None, dict(info.metadata)
        elif detail.type_url == BAD_REQUEST_TYPE:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.type_url == RETRY_INFO_TYPE:
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(retry) and retry.HasField("retry_delay"):
                out.retry_delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    out.violations = tuple(violations)
    return out


def retry_delay_of(e: grpc.RpcError) -> float | None:
    """The server's ``RetryInfo`` delay on a failed call, in seconds."""
    return _details(e).retry_delay


def from_rpc_error(
    e: grpc.RpcError,
    *,
    request_id: str | None = None,
    attempts: int = 1,
    code: grpc.StatusCode | None = None,
) -> WalletBalancerError:
    """The exception for a failed call (``e`` is also a ``grpc.Call``);
    ``code`` overrides the call's code."""
    if code is None:
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    message = (e.details() if hasattr(e, "details") else None) or ""
    d = _details(e)
    cls = _BY_REASON.get((code, d.reason or ""), _BY_CODE.get(code, WalletBalancerError))
    err = cls(
        code,
        message,
        reason=d.reason,
        domain=d.domain,
        metadata=d.metadata,
        field_violations=d.violations,
        request_id=request_id,
        attempts=attempts,
        retry_delay=d.retry_delay,
    )
    err.__cause__ = e
    return err
