#!/usr/bin/env python3
"""An example executor: before each trade, make sure the wallet holds the ETH
the trade needs; when the sidecar answers FAILED_PRECONDITION (the wallet
cannot cover it, or the pools are away from the oracle), skip the trade and
log why.

This is the integration point of the prototype's ``SmartWalletManager``: the
bot no longer prices, converts or guesses anything itself; it asks the
sidecar in its pod and acts on a typed answer.

Trades here are a stand-in: ``--trade WEI`` (repeatable) or a JSON-lines
file of ``{"id": "...", "eth_wei": "..."}``; a real executor plugs its own
strategy into :func:`next_trades` and its order placement into
:func:`place_trade`.

Settings come from the environment, as in the Kubernetes manifests
(deploy/k8s): ``WB_TARGET`` (default ``127.0.0.1:50051``), ``WB_CHAIN``,
``WB_AUTH_TOKEN_FILE`` (bearer token, when the sidecar requires one).

    python examples/executor.py --chain devnet --trade 100000000000000000
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from wallet_balancer_client import (
    FailedPrecondition,
    InsufficientFunds,
    LimitExceeded,
    Outcome,
    PriceDeviation,
    WalletBalancer,
    WalletBalancerError,
)

log = logging.getLogger("executor")

ETH = 10**18


@dataclass(frozen=True)
class Trade:
    id: str
    #: Native ETH the trade spends (value + gas it pays itself), in wei.
    eth_wei: int


def eth(wei: int | None) -> str:
    """Wei as ETH for logs (exact: integer arithmetic, no float)."""
    if wei is None:
        return "?"
    return f"{wei // ETH}.{wei % ETH:018d}".rstrip("0").rstrip(".") + " ETH"


def ensure_funds(wb: WalletBalancer, trade: Trade) -> bool:
    """True when the trade may go ahead. The request_id is derived from the
    trade, so a retry (by the client, or by this executor after a restart)
    never converts twice for the same trade."""
    request_id = f"trade-{trade.id}"
    try:
        r = wb.ensure_eth(trade.eth_wei, request_id=request_id)
    except InsufficientFunds as e:
        log.warning(
            "skip trade %s: insufficient funds: short %s ($%s), convertible %s ($%s)",
            trade.id,
            eth(e.shortage_wei),
            e.shortage_usd,
            eth(e.convertible_wei),
            e.convertible_usd,
        )
        return False
    except PriceDeviation as e:
        log.warning(
            "skip trade %s: %s pool price deviates from the oracle: quoted $%s vs oracle $%s per token",
            trade.id,
            e.token,
            e.quoted_usd_per_token,
            e.oracle_usd_per_token,
        )
        return False
    except FailedPrecondition as e:  # stale feed, sequencer down, simulation reverted, ...
        log.warning("skip trade %s: %s: %s", trade.id, e.reason or e.code.name, e.message)
        return False
    except LimitExceeded as e:
        log.warning("skip trade %s: spend limit %s: %s", trade.id, e.reason, e.message)
        return False
    except WalletBalancerError as e:  # unavailable after retries, invalid request, ...
        log.error("skip trade %s: sidecar error %s after %d attempt(s)", trade.id, e, e.attempts)
        return False

    if r.outcome is Outcome.CONVERTED:
        for c in r.conversions:
            log.info(
                "trade %s: converted %s %s -> %s via %s (tx %s, gas %s)",
                trade.id,
                c.amount_in,
                c.token_symbol,
                eth(c.eth_out_wei),
                c.venue_name,
                c.tx_hash,
                eth(c.gas_cost_wei),
            )
    log.info(
        "trade %s: %s, wallet holds %s (need %s)",
        trade.id,
        r.outcome.name.lower(),
        eth(r.eth_after_wei),
        eth(r.need_wei),
    )
    return True


def place_trade(trade: Trade) -> None:
    """Stand-in for the bot's own order placement."""
    log.info("trade %s: placed (%s)", trade.id, eth(trade.eth_wei))


def next_trades(args: argparse.Namespace) -> Iterator[Trade]:
    """Stand-in for the bot's strategy."""
    for i, wei in enumerate(args.trade or (), 1):
        yield Trade(f"{args.run_id}-{i}", wei)
    if args.trades_file:
        with open(args.trades_file) as f:
            for line in f:
                if line.strip():
                    t = json.loads(line)
                    yield Trade(str(t["id"]), int(t["eth_wei"]))


def run(wb: WalletBalancer, trades: Iterable[Trade], stop: threading.Event) -> tuple[int, int]:
    placed = skipped = 0
    for trade in trades:
        if stop.is_set():
            log.info("stopping: no new trades")
            break
        if ensure_funds(wb, trade):
            place_trade(trade)
            placed += 1
        else:
            skipped += 1
    return placed, skipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", help="sidecar host:port (default: $WB_TARGET or 127.0.0.1:50051)")
    p.add_argument("--chain", help="chain name in the sidecar's config (default: $WB_CHAIN)")
    p.add_argument("--trade", type=int, action="append", metavar="WEI", help="a trade needing WEI of ETH")
    p.add_argument("--trades-file", help="JSON lines: {\"id\": ..., \"eth_wei\": ...}")
    p.add_argument("--run-id", default="demo", help="prefix of the ids of --trade trades")
    p.add_argument("--wait-ready", type=float, default=60.0, help="seconds to wait for the sidecar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()
    # Kubernetes stops the executor first (SIGTERM), then the sidecar: finish
    # the trade in hand, start no new one, exit.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    overrides = {k: v for k, v in (("target", args.target), ("chain", args.chain)) if v}
    with WalletBalancer.from_env(wait_for_ready=True, **overrides) as wb:
        if wb.chain is None:
            p.error("no chain: --chain or WB_CHAIN")
        try:
            wb.wait_until_serving(args.wait_ready)
        except WalletBalancerError as e:
            log.error("sidecar not ready: %s", e)
            return 1
        placed, skipped = run(wb, next_trades(args), stop)
    log.info("done: %d placed, %d skipped", placed, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
