"""What the sync and the asyncio client share: settings, argument checks,
request building, the environment."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._proto import wallet_balancer_pb2 as pb

__all__ = [
    "DEFAULT_TARGET",
    "HEALTH_CHECK",
    "SERVICE_NAME",
    "Settings",
    "check_after",
    "check_wei",
    "env_overrides",
    "new_request_id",
]

#: Where the sidecar listens inside the pod.
DEFAULT_TARGET = "127.0.0.1:50051"
#: The service name gRPC health reports the sidecar's readiness under.
SERVICE_NAME = "walletbalancer.v1.WalletBalancer"
#: gRPC health's Check method.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def new_request_id(prefix: str = "py") -> str:
    """A fresh idempotency key (fits the API's ``[A-Za-z0-9._:-]{1,128}``)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def check_wei(name: str, value: object) -> int:
    # Money is never a float (nor a bool, which is an int subclass).
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of wei, not {type(value).__name__}")
    return value


def check_after(after: object) -> int:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError("after must be a non-negative int sequence number")
    return after


def env_overrides(overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(target, kwargs)`` from ``WB_TARGET``, ``WB_CHAIN`` and
    ``WB_AUTH_TOKEN_FILE``; ``overrides`` win."""
    kwargs: dict[str, Any] = {}
    if os.environ.get("WB_CHAIN"):
        kwargs["chain"] = os.environ["WB_CHAIN"]
    if os.environ.get("WB_AUTH_TOKEN_FILE"):
        kwargs["token_file"] = os.environ["WB_AUTH_TOKEN_FILE"]
    kwargs.update(overrides)
    target = kwargs.pop("target", os.environ.get("WB_TARGET") or DEFAULT_TARGET)
    return target, kwargs


@dataclass(frozen=True)
class Settings:
    """The validated constructor arguments of a client."""

    chain: str | None
    timeout: float
    ensure_timeout: float
    retries: int
    backoff: float
    max_backoff: float
    stream_max_backoff: float
    wait_for_ready: bool
    metadata: tuple[tuple[str, str], ...]

    @classmethod
    def make(
        cls,
        *,
        chain: str | None,
        timeout: float,
        ensure_timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
        stream_max_backoff: float,
        token: str | None,
        token_file: str | os.PathLike[str] | None,
        wait_for_ready: bool,
    ) -> Settings:
        if timeout <= 0 or ensure_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if backoff < 0 or max_backoff < 0 or stream_max_backoff <= 0:
            raise ValueError("backoffs must be >= 0 (stream_max_backoff > 0)")
        if token is not None and token_file is not None:
            raise ValueError("give token or token_file, not both")
        if token_file is not None:
            token = Path(token_file).read_text().strip()
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("the bearer token must be non-empty, without whitespace")
        return cls(
            chain=chain,
            timeout=timeout,
            ensure_timeout=ensure_timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            stream_max_backoff=stream_max_backoff,
            wait_for_ready=wait_for_ready,
            metadata=(("authorization", f"Bearer {token}"),) if token is not None else (),
        )

    def chain_of(self, chain: str | None) -> str:
        c = chain if chain is not None else self.chain
        if c is None:
            raise ValueError("no chain: pass chain=... or set the client's chain=...")
        return c

    def ensure_request(
        self, required_wei: int, request_id: str | None, chain: str | None, dry_run: bool
    ) -> pb.EnsureEthRequest:
        check_wei("required_wei", required_wei)
        return pb.EnsureEthRequest(
            chain=self.chain_of(chain),
            required_wei=str(required_wei),
            request_id=request_id if request_id is not None else new_request_id(),
            dry_run=dry_run,
        )
