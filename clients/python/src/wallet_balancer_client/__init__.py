"""Python client of the wallet-balancer gRPC sidecar.

>>> from wallet_balancer_client import WalletBalancer, FailedPrecondition
>>> wb = WalletBalancer("127.0.0.1:50051", chain="arbitrum")
>>> r = wb.ensure_eth(10**17, request_id="trade-8812")   # doctest: +SKIP

:class:`AsyncWalletBalancer` is the same client for asyncio programs
(``grpc.aio``). Amounts are ``int`` (wei, token base units); USD is
``decimal.Decimal``.
"""

from ._common import DEFAULT_TARGET, SERVICE_NAME, new_request_id
from .aio import AsyncWalletBalancer
from .client import WalletBalancer
from .errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    PriceDeviation,
    PriceFeedUnusable,
    SequencerDown,
    SimulationReverted,
    Unauthenticated,
    Unavailable,
    WalletBalancerError,
)
from .models import (
    Conversion,
    ConversionEvent,
    ConversionState,
    EnsureResult,
    Outcome,
    ProtocolError,
    TokenStatus,
    Venue,
    WalletStatus,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TARGET",
    "SERVICE_NAME",
    "Aborted",
    "AsyncWalletBalancer",
    "Conversion",
    "ConversionEvent",
    "ConversionState",
    "DeadlineExceeded",
    "EnsureResult",
    "FailedPrecondition",
    "FieldViolation",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidArgument",
    "LimitExceeded",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "PriceDeviation",
    "PriceFeedUnusable",
    "ProtocolError",
    "SequencerDown",
    "SimulationReverted",
    "TokenStatus",
    "Unauthenticated",
    "Unavailable",
    "Venue",
    "WalletBalancer",
    "WalletBalancerError",
    "new_request_id",
]
