"""The retry policy both clients share (sync and asyncio).

A unary call has ONE deadline: ``timeout`` seconds from the moment it is
made, whatever happens inside (google-api-core's model). Each attempt gets
what is left of it as its gRPC deadline; UNAVAILABLE and DEADLINE_EXCEEDED
are retried after an exponential backoff with full jitter while another
attempt still fits in the budget, up to ``retries`` retries; never sooner
than the server's ``RetryInfo`` delay when it gives one. When the pause
before the next attempt would outlast the budget, the call gives up at once
with the last attempt's error: it never sleeps only to fail.

The conversion stream follows another rule: it resumes for ever (capped
backoff) from the last sequence it delivered, unless the error says the
request itself is wrong.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Any

import grpc

__all__ = [
    "CHANNEL_DEFAULTS",
    "RETRYABLE",
    "STREAM_FATAL",
    "Budget",
    "backoff_delay",
    "effective_code",
    "retry_pause",
    "merge_options",
]

#: Unary codes that are retried (with the same request_id for EnsureEth).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

#: Stream codes that end the stream with an exception: the request is wrong
#: (unknown chain, bad token, ...) and retrying cannot help. Every other
#: code, and a clean end (the sidecar shutting down), resumes the stream.
STREAM_FATAL = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

#: Options of channels the clients create (the caller's ``options`` win).
#: The sidecar is local: never route it through an HTTP proxy from the
#: environment; reconnect within a second or two after it restarts, instead
#: of gRPC's default reconnect backoff that grows to two minutes.
CHANNEL_DEFAULTS: tuple[tuple[str, int], ...] = (
    ("grpc.enable_http_proxy", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

# A server that timed the call out first answers CANCELLED ("Timeout
# expired", tonic); within this much of our own deadline, it was ours.
_DEADLINE_SLACK = 0.05


def merge_options(options: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """:data:`CHANNEL_DEFAULTS` overridden by the caller's options (one value per key)."""
    merged: dict[str, Any] = dict(CHANNEL_DEFAULTS)
    for key, value in options:
        merged[key] = value
    return list(merged.items())


class Budget:
    """The one deadline of a call: ``timeout`` seconds from now."""

    __slots__ = ("deadline", "timeout")

    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, delay: float) -> bool:
        """True when an attempt can still start after ``delay`` seconds
        (and have a few milliseconds of its own)."""
        return delay + 0.005 < self.remaining()


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """The pause before retry number ``attempt`` (1-based): exponential,
    capped at ``maximum``, with full jitter."""
    return random.uniform(0, min(maximum, initial * (2 ** (attempt - 1))))


def retry_pause(attempt: int, initial: float, maximum: float, server_delay: float | None) -> float:
    """The pause before retry number ``attempt``: the backoff, but never
    less than the server's ``RetryInfo`` delay when it sent one (it knows
    why: a conversion still in progress, a stuck transaction, the fee cap).
    When that is longer than the call's budget, the caller gives up at once
    instead of retrying early."""
    pause = backoff_delay(attempt, initial, maximum)
    if server_delay is not None and server_delay > pause:
        return server_delay
    return pause


def effective_code(code: grpc.StatusCode, attempt_deadline: float) -> grpc.StatusCode:
    """The code of a failed attempt; CANCELLED at its deadline is DEADLINE_EXCEEDED."""
    if code == grpc.StatusCode.CANCELLED and time.monotonic() >= attempt_deadline - _DEADLINE_SLACK:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return code
