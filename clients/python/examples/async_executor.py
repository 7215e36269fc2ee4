#!/usr/bin/env python3
"""An asyncio executor: trades are decided concurrently; before each one the
executor makes sure the wallet holds the ETH it needs, within the trade's
time budget, and abandons it when its opportunity expires. Meanwhile it
follows the sidecar's conversion stream as an audit trail.

The asyncio counterpart of ``executor.py``, on
:class:`wallet_balancer_client.AsyncWalletBalancer`:

- ``budget_s``: the whole time EnsureEth may take (one deadline across the
  client's retries); past it the trade is skipped (:class:`DeadlineExceeded`).
- ``valid_for_s``: the opportunity's life. Past it the executor cancels the
  task awaiting EnsureEth, which cancels the RPC; a conversion the sidecar
  already started still completes, and a later EnsureEth with the same
  request_id gets its answer instead of converting again.
- The stream resumes by itself across sidecar restarts, from the last event
  it delivered: the audit trail has no gap and no duplicate.

Trades here are a stand-in: ``--trade WEI`` (repeatable) or a JSON-lines
file of ``{"id": "...", "eth_wei": "...", "budget_s": 2.0, "valid_for_s":
5.0}`` (the last two optional). Every decision is printed on stdout as one
JSON line; logs go to stderr. With ``--follow`` the executor keeps following
the stream after its trades, until SIGTERM or SIGINT.

Settings come from the environment, as in the Kubernetes manifests
(deploy/k8s): ``WB_TARGET`` (default ``127.0.0.1:50051``), ``WB_CHAIN``,
``WB_AUTH_TOKEN_FILE``.

    python examples/async_executor.py --chain devnet --trade 100000000000000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

from wallet_balancer_client import (
    AsyncWalletBalancer,
    DeadlineExceeded,
    FailedPrecondition,
    InsufficientFunds,
    LimitExceeded,
    Outcome,
    PriceDeviation,
    WalletBalancerError,
)

log = logging.getLogger("async_executor")

ETH = 10**18


@dataclass(frozen=True)
class Trade:
    id: str
    #: Native ETH the trade spends (value + gas it pays itself), in wei.
    eth_wei: int
    #: The whole time EnsureEth may take; None: the client's ensure_timeout.
    budget_s: float | None = None
    #: How long the opportunity lasts; None: until EnsureEth answers.
    valid_for_s: float | None = None


@dataclass(frozen=True)
class Decision:
    """What the executor did with a trade (one JSON line on stdout)."""

    trade: str
    #: ``placed``, ``skipped`` (the sidecar said no, or the budget ran out)
    #: or ``expired`` (the opportunity went first; EnsureEth was cancelled).
    action: str
    #: EnsureEth's outcome, or why the trade was not placed.
    reason: str
    request_id: str
    #: Wall-clock start (Unix seconds) and time to the decision.
    started: float
    elapsed_s: float


def eth(wei: int | None) -> str:
    """Wei as ETH for logs (exact: integer arithmetic, no float)."""
    if wei is None:
        return "?"
    return f"{wei // ETH}.{wei % ETH:018d}".rstrip("0").rstrip(".") + " ETH"


async def ensure_funds(wb: AsyncWalletBalancer, trade: Trade) -> tuple[str, str]:
    """``(action, reason)`` for the trade. The request_id is derived from
    the trade: a retry (by the client, or by this executor after a restart)
    never converts twice for the same trade."""
    request_id = f"trade-{trade.id}"
    try:
        r = await wb.ensure_eth(trade.eth_wei, request_id=request_id, timeout=trade.budget_s)
    except InsufficientFunds as e:
        log.warning("skip trade %s: insufficient funds: short %s ($%s)", trade.id, eth(e.shortage_wei), e.shortage_usd)
        return "skipped", "INSUFFICIENT_FUNDS"
    except PriceDeviation as e:
        log.warning("skip trade %s: %s pool price deviates from the oracle", trade.id, e.token)
        return "skipped", "PRICE_DEVIATION"
    except FailedPrecondition as e:  # stale feed, sequencer down, simulation reverted, ...
        log.warning("skip trade %s: %s: %s", trade.id, e.reason or e.code.name, e.message)
        return "skipped", e.reason or e.code.name
    except LimitExceeded as e:
        log.warning("skip trade %s: spend limit %s: %s", trade.id, e.reason, e.message)
        return "skipped", e.reason or e.code.name
    except DeadlineExceeded as e:
        log.warning("skip trade %s: no answer within its %ss budget (%d attempt(s))", trade.id, trade.budget_s, e.attempts)
        return "skipped", "DEADLINE_EXCEEDED"
    except WalletBalancerError as e:  # unavailable within the budget, invalid request, ...
        log.error("skip trade %s: sidecar error %s after %d attempt(s)", trade.id, e, e.attempts)
        return "skipped", e.code.name
    for c in r.conversions:
        log.info(
            "trade %s: converted %s %s -> %s via %s (tx %s)",
            trade.id,
            c.amount_in,
            c.token_symbol,
            eth(c.eth_out_wei),
            c.venue_name,
            c.tx_hash,
        )
    log.info("trade %s: %s, wallet holds %s", trade.id, r.outcome.name.lower(), eth(r.eth_after_wei))
    return ("placed" if r.outcome in (Outcome.SUFFICIENT, Outcome.CONVERTED) else "skipped"), r.outcome.name


async def decide(wb: AsyncWalletBalancer, trade: Trade, out: TextIO) -> Decision:
    started, t0 = time.time(), time.monotonic()
    try:
        # wait_for cancels ensure_funds when the opportunity expires: the
        # EnsureEth call in flight is cancelled with it.
        action, reason = await asyncio.wait_for(ensure_funds(wb, trade), trade.valid_for_s)
    except asyncio.TimeoutError:
        log.warning("trade %s: opportunity gone after %ss; EnsureEth cancelled", trade.id, trade.valid_for_s)
        action, reason = "expired", "OPPORTUNITY_EXPIRED"
    if action == "placed":
        log.info("trade %s: placed (%s)", trade.id, eth(trade.eth_wei))  # the bot's own order placement
    d = Decision(trade.id, action, reason, f"trade-{trade.id}", started, round(time.monotonic() - t0, 4))
    out.write(json.dumps(asdict(d)) + "\n")
    out.flush()
    return d


async def follow(wb: AsyncWalletBalancer, after: int, audit: TextIO | None) -> None:
    """Logs (and appends to ``audit``) every conversion event, for ever."""
    async for ev in wb.conversions(after=after):
        log.info(
            "event %d: %s %s %s%s",
            ev.sequence,
            ev.request_id,
            ev.conversion_id,
            ev.state.name,
            f" tx {ev.tx_hash}" if ev.tx_hash else "",
        )
        if audit is not None:
            record = {
                "sequence": ev.sequence,
                "request_id": ev.request_id,
                "conversion_id": ev.conversion_id,
                "state": ev.state.name,
                "tx_hash": ev.tx_hash,
            }
            audit.write(json.dumps(record) + "\n")
            audit.flush()


def read_trades(args: argparse.Namespace) -> Iterator[Trade]:
    """Stand-in for the bot's strategy."""
    for i, wei in enumerate(args.trade or (), 1):
        yield Trade(f"{args.run_id}-{i}", wei, args.budget)
    if args.trades_file:
        with open(args.trades_file) as f:
            for line in f:
                if line.strip():
                    t = json.loads(line)
                    yield Trade(
                        str(t["id"]),
                        int(t["eth_wei"]),
                        float(t["budget_s"]) if "budget_s" in t else args.budget,
                        float(t["valid_for_s"]) if "valid_for_s" in t else None,
                    )


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Kubernetes stops the executor first (SIGTERM), then the sidecar.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    overrides = {k: v for k, v in (("target", args.target), ("chain", args.chain)) if v}
    async with AsyncWalletBalancer.from_env(**overrides) as wb:
        if wb.chain is None:
            log.error("no chain: --chain or WB_CHAIN")
            return 2
        try:
            await wb.wait_until_serving(args.wait_ready)
        except WalletBalancerError as e:
            log.error("sidecar not ready: %s", e)
            return 1
        audit = open(args.events_out, "a") if args.events_out else None  # noqa: SIM115 - closed below
        watcher = asyncio.create_task(follow(wb, args.after, audit))
        try:
            decisions = await asyncio.gather(*(decide(wb, t, sys.stdout) for t in read_trades(args)))
            counts = {a: sum(d.action == a for d in decisions) for a in ("placed", "skipped", "expired")}
            log.info("done: %(placed)d placed, %(skipped)d skipped, %(expired)d expired", counts)
            if args.follow:
                log.info("following conversions until SIGTERM")
                await stop.wait()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if audit is not None:
                audit.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--target", help="sidecar host:port (default: $WB_TARGET or 127.0.0.1:50051)")
    p.add_argument("--chain", help="chain name in the sidecar's config (default: $WB_CHAIN)")
    p.add_argument("--trade", type=int, action="append", metavar="WEI", help="a trade needing WEI of ETH")
    p.add_argument("--trades-file", help='JSON lines: {"id", "eth_wei", "budget_s"?, "valid_for_s"?}')
    p.add_argument("--run-id", default="demo", help="prefix of the ids of --trade trades")
    p.add_argument("--budget", type=float, help="default EnsureEth budget per trade, seconds")
    p.add_argument("--events-out", help="append every conversion event to this JSON-lines file")
    p.add_argument("--after", type=int, default=0, help="follow the stream from after this sequence")
    p.add_argument("--follow", action="store_true", help="keep following the stream until SIGTERM")
    p.add_argument("--wait-ready", type=float, default=60.0, help="seconds to wait for the sidecar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
