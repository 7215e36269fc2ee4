#!/usr/bin/env python3
"""Benchmark client of the sidecar from Python (grpcio), driven by
`wb-dev bench` (scripts/bench).

Protocol with the harness: connect and warm up (a health check: no chain
read), print ``ready``, wait for a line on stdin, run, print ONE JSON line.
The harness counts the JSON-RPC requests between its ``go`` and that line.

    grpc_client.py --target 127.0.0.1:PORT --stubs DIR status --n 200
    grpc_client.py ... ensure --n 100 --required-wei 1000000000000000 --prefix py-suff
    grpc_client.py ... convert --n 5 --rpc-direct http://127.0.0.1:ANVIL --wallet 0x.. \
        --reserve-wei 5000000000000000 --extra-wei 2000000000000000 --prefix py-conv
    grpc_client.py ... load --concurrency 64 --seconds 3

Stubs are generated from proto/ into --stubs (once) with grpc_tools.protoc.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "walletbalancer/v1/wallet_balancer.proto"
CHAIN = "devnet"


def load_stubs(out: Path):
    target = out / "walletbalancer" / "v1" / "wallet_balancer_pb2.py"
    if not target.exists():
        from grpc_tools import protoc

        out.mkdir(parents=True, exist_ok=True)
        well_known = importlib.resources.files("grpc_tools") / "_proto"
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_DIR}",
                f"-I{well_known}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                str(PROTO_DIR / PROTO_FILE),
            ]
        )
        if rc != 0:
            raise SystemExit(f"grpc_tools.protoc failed ({rc})")
    sys.path.insert(0, str(out))
    from walletbalancer.v1 import wallet_balancer_pb2 as pb
    from walletbalancer.v1 import wallet_balancer_pb2_grpc as pb_grpc

    return pb, pb_grpc


def eth_balance_pending(rpc: str, wallet: str) -> int:
    """Straight to anvil (not through the counting proxy): setting up a
    conversion is not part of what is measured."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [wallet, "pending"]})
    req = urllib.request.Request(rpc, data=body.encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(json.load(r)["result"], 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--stubs", required=True, type=Path)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status")
    s.add_argument("--n", type=int, required=True)
    e = sub.add_parser("ensure")
    e.add_argument("--n", type=int, required=True)
    e.add_argument("--required-wei", required=True)
    e.add_argument("--prefix", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--rpc-direct", required=True)
    c.add_argument("--wallet", required=True)
    c.add_argument("--reserve-wei", type=int, required=True)
    c.add_argument("--extra-wei", type=int, required=True)
    c.add_argument("--prefix", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--concurrency", type=int, required=True)
    lo.add_argument("--seconds", type=float, required=True)
    args = ap.parse_args()

    pb, pb_grpc = load_stubs(args.stubs)
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(args.target, options=[("grpc.enable_http_proxy", 0)])
    stub = pb_grpc.WalletBalancerStub(channel)
    h = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="walletbalancer.v1.WalletBalancer"), timeout=10
    )
    assert h.status == health_pb2.HealthCheckResponse.SERVING, h
    print("ready", flush=True)
    sys.stdin.readline()

    status_req = pb.GetStatusRequest(chain=CHAIN)
    lat: list[float] = []
    if args.cmd == "status":
        for _ in range(args.n):
            t0 = time.perf_counter()
            stub.GetStatus(status_req, timeout=30)
            lat.append((time.perf_counter() - t0) * 1e3)
        out = {"lat_ms": lat}
    elif args.cmd == "ensure":
        for i in range(args.n):
            req = pb.EnsureEthRequest(chain=CHAIN, required_wei=args.required_wei, request_id=f"{args.prefix}-{i}")
            t0 = time.perf_counter()
            r = stub.EnsureEth(req, timeout=120)
            lat.append((time.perf_counter() - t0) * 1e3)
            assert r.outcome == pb.ENSURE_OUTCOME_SUFFICIENT, r
        out = {"lat_ms": lat}
    elif args.cmd == "convert":
        legs = []
        for i in range(args.n):
            balance = eth_balance_pending(args.rpc_direct, args.wallet)
            required = balance - args.reserve_wei + args.extra_wei
            req = pb.EnsureEthRequest(chain=CHAIN, required_wei=str(required), request_id=f"{args.prefix}-{i}")
            t0 = time.perf_counter()
            r = stub.EnsureEth(req, timeout=120)
            lat.append((time.perf_counter() - t0) * 1e3)
            assert r.outcome == pb.ENSURE_OUTCOME_CONVERTED, r
            legs.append(len(r.conversions))
        out = {"lat_ms": lat, "legs": legs}
    else:
        deadline = time.perf_counter() + args.seconds
        counts = [0] * args.concurrency
        errors = [0] * args.concurrency

        def caller(k: int) -> None:
            while time.perf_counter() < deadline:
                try:
                    stub.GetStatus(status_req, timeout=30)
                    counts[k] += 1
                except grpc.RpcError:
                    errors[k] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = {"ok": sum(counts), "errors": sum(errors), "secs": time.perf_counter() - t0}
    print(json.dumps(out), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
