#!/usr/bin/env python3
"""The baseline of `wb-dev bench`: what a bot does without the
sidecar, the prototype's way. One balance check = eth_getBalance of the
wallet plus one ERC-20 balanceOf per token, fanned out over a thread pool,
plain JSON-RPC over HTTP with urllib (no keep-alive: a connection per
request, as urllib does), through the same latency proxy as the sidecar.
It reads balances only: no prices, no reserves, no block number.

Protocol with the harness (as grpc_client.py): print ``ready``, wait for a
line on stdin, run, print ONE JSON line.

    baseline_reader.py --rpc URL --wallet 0x.. --tokens 0xA,0xB,0xC,0xD latency --n 100
    baseline_reader.py ... load --concurrency 64 --seconds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

SEL_BALANCE_OF = "70a08231"
_ids = itertools.count(1)


def rpc(url: str, method: str, params: list) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.load(r)
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return int(answer["result"], 16)


def read_balances(pool: ThreadPoolExecutor, url: str, wallet: str, tokens: list[str]) -> list[int]:
    """ETH + every token balance, one request each, in parallel."""
    word = wallet.lower().removeprefix("0x").rjust(64, "0")
    futures = [pool.submit(rpc, url, "eth_getBalance", [wallet, "latest"])]
    for t in tokens:
        call = {"to": t, "data": "0x" + SEL_BALANCE_OF + word}
        futures.append(pool.submit(rpc, url, "eth_call", [call, "latest"]))
    return [f.result() for f in futures]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpc", required=True)
    ap.add_argument("--wallet", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token addresses")
    sub = ap.add_subparsers(dest="cmd", required=True)
    la = sub.add_parser("latency")
    la.add_argument("--n", type=int, required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--concurrency", type=int, required=True)
    lo.add_argument("--seconds", type=float, required=True)
    args = ap.parse_args()
    tokens = [t for t in args.tokens.split(",") if t]
    width = 1 + len(tokens)

    print("ready", flush=True)
    sys.stdin.readline()

    if args.cmd == "latency":
        lat = []
        with ThreadPoolExecutor(max_workers=width) as pool:
            for _ in range(args.n):
                t0 = time.perf_counter()
                read_balances(pool, args.rpc, args.wallet, tokens)
                lat.append((time.perf_counter() - t0) * 1e3)
        out = {"lat_ms": lat}
    else:
        deadline = time.perf_counter() + args.seconds
        counts = [0] * args.concurrency
        errors = [0] * args.concurrency

        def caller(k: int) -> None:
            # Each caller is a bot task doing its own balance checks.
            with ThreadPoolExecutor(max_workers=width) as pool:
                while time.perf_counter() < deadline:
                    try:
                        read_balances(pool, args.rpc, args.wallet, tokens)
                        counts[k] += 1
                    except Exception:  # noqa: BLE001 - counted
                        errors[k] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = {"ok": sum(counts), "errors": sum(errors), "secs": time.perf_counter() - t0}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
