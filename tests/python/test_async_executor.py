"""The asyncio executor example (clients/python/examples/async_executor.py)
against the real binary, on a devnet of its own: its blocks are stopped and
its sidecar restarted, which the session's devnet must not see.

One run of the example, as an executor would live it:

1. with the chain's blocks stopped (anvil automine off), five trades at
   once: three small ones the wallet covers (placed concurrently), one
   whose opportunity expires after 0.5 s while EnsureEth waits for its
   conversion (the executor cancels the task: the sidecar must see the call
   cancelled, in its metrics and its log), one with a 1 s budget that must
   be skipped as DEADLINE_EXCEEDED within 100 ms of that second;
2. blocks resume: both conversions the sidecar started still complete, and
   their request_ids get their answers;
3. the sidecar restarts (SIGTERM, start again) while the example follows the
   stream; a conversion after the restart reaches the example too;
4. the example's audit trail (every event it delivered) equals the journal's
   from sequence 1: no gap, no duplicate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import Sidecar, start_sidecar
from wallet_balancer_client import Outcome, WalletBalancer

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "clients" / "python" / "examples" / "async_executor.py"
CHAIN = "devnet"
MILLI = 10**15  # 0.001 ETH


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def own_sidecar(tmp_path_factory: pytest.TempPathFactory):
    metrics = f"127.0.0.1:{_free_port()}"
    env = {"WB__TELEMETRY__METRICS_LISTEN": metrics}
    with start_sidecar(tmp_path_factory.mktemp("async-executor"), env) as sc:
        sc.metrics_url = f"http://{metrics}/metrics"  # type: ignore[attr-defined]
        yield sc


def _scrape(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return r.read().decode()


def _handled(text: str, method: str, code: str) -> float:
    """``wallet_balancer_grpc_server_handled_total`` of one API method and code."""
    for line in text.splitlines():
        if line.startswith("wallet_balancer_grpc_server_handled_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if (
                labels.get("grpc_service") == "walletbalancer.v1.WalletBalancer"
                and labels.get("grpc_method") == method
                and labels.get("grpc_code") == code
            ):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes], logs: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc.poll() is not None:
            pytest.fail(f"the example exited ({proc.returncode}) while waiting for {what}\n{logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs()}")
        time.sleep(0.1)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # A line is complete once its newline is written.
    text = path.read_text()
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def test_async_executor_cancels_keeps_deadlines_and_survives_a_restart(own_sidecar: Sidecar, tmp_path: Path):
    sc = own_sidecar
    rpc = sc.rpc
    metrics_url: str = sc.metrics_url  # type: ignore[attr-defined]
    before = _scrape(metrics_url)
    assert _handled(before, "EnsureEth", "CANCELLED") == 0

    trades = [
        {"id": "small-1", "eth_wei": str(MILLI), "budget_s": 10},
        {"id": "small-2", "eth_wei": str(MILLI), "budget_s": 10},
        {"id": "small-3", "eth_wei": str(MILLI), "budget_s": 10},
        # Needs a conversion; the opportunity lasts 0.5 s.
        {"id": "expires", "eth_wei": str(50 * MILLI), "budget_s": 60, "valid_for_s": 0.5},
        # Needs a bigger one; EnsureEth may take 1 s in all.
        {"id": "budget", "eth_wei": str(120 * MILLI), "budget_s": 1.0},
    ]
    trades_file = tmp_path / "trades.jsonl"
    trades_file.write_text("".join(json.dumps(t) + "\n" for t in trades))
    decisions_path = tmp_path / "decisions.jsonl"
    audit_path = tmp_path / "events.jsonl"
    stderr_path = tmp_path / "example.stderr.log"

    def logs() -> str:
        err = stderr_path.read_text() if stderr_path.exists() else ""
        return f"--- example stderr ---\n{err[-8000:]}\n{sc.logs()}"

    # Blocks stop: a conversion's transaction stays pending.
    rpc.call("evm_setAutomine", False)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(decisions_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE),
                "--target",
                sc.grpc_target,
                "--chain",
                CHAIN,
                "--trades-file",
                str(trades_file),
                "--events-out",
                str(audit_path),
                "--follow",
                "--wait-ready",
                "10",
            ],
            stdout=out,
            stderr=err,
            env=env,
        )
    try:
        decided = _wait("five decisions", lambda: len(_json_lines(decisions_path)) == 5, 30, proc, logs)
        by_id = {d["trade"]: d for d in _json_lines(decisions_path)}
        assert decided

        # 1. Concurrent: the small trades were placed, all started before any answered.
        for i in (1, 2, 3):
            d = by_id[f"small-{i}"]
            assert (d["action"], d["reason"]) == ("placed", "SUFFICIENT"), d
        smalls = [by_id[f"small-{i}"] for i in (1, 2, 3)]
        first_answer = min(d["started"] + d["elapsed_s"] for d in smalls)
        assert max(d["started"] for d in smalls) < first_answer, smalls

        # The expired trade: abandoned at 0.5 s, its RPC cancelled on the sidecar's side.
        d = by_id["expires"]
        assert (d["action"], d["reason"]) == ("expired", "OPPORTUNITY_EXPIRED"), d
        assert 0.5 <= d["elapsed_s"] < 0.6, d
        # The 1 s budget: skipped within 100 ms of it.
        d = by_id["budget"]
        assert (d["action"], d["reason"]) == ("skipped", "DEADLINE_EXCEEDED"), d
        assert 1.0 <= d["elapsed_s"] < 1.1, d

        def server_saw() -> bool:
            text = _scrape(metrics_url)
            return (
                _handled(text, "EnsureEth", "CANCELLED") == 1
                and _handled(text, "EnsureEth", "DEADLINE_EXCEEDED") == 1
            )

        _wait("the sidecar to count one cancelled and one timed-out EnsureEth", server_saw, 5, proc, logs)
        sidecar_log = sc.logs()
        assert "call cancelled by the client before it was answered" in sidecar_log, sidecar_log
        assert "call's deadline passed before it was answered" in sidecar_log, sidecar_log

        # 2. Blocks resume: the two conversions complete; their request_ids get the answers.
        rpc.call("evm_setAutomine", True)
        rpc.call("evm_mine")
        with WalletBalancer(sc.grpc_target, chain=CHAIN, timeout=60) as wb:
            converted: set[str] = set()
            for trade, wei in (("expires", 50 * MILLI), ("budget", 120 * MILLI)):
                r = wb.ensure_eth(wei, f"trade-{trade}", timeout=60)
                assert r.outcome is Outcome.CONVERTED and r.conversions, (trade, r)
                converted |= {c.conversion_id for c in r.conversions}

            def confirmed(ids: set[str]) -> bool:
                seen = {e["conversion_id"] for e in _json_lines(audit_path) if e["state"] == "CONFIRMED"}
                return ids <= seen

            # (The sidecar may batch both requests into one conversion.)
            _wait("the example to see those conversions confirmed", lambda: confirmed(converted), 30, proc, logs)

            # 3. The sidecar restarts under the example's stream.
            assert sc.stop_sidecar() == 0, logs()
            time.sleep(1.0)  # down for a while: the stream must keep trying
            sc.start_sidecar()
            s = wb.status()
            required = s.eth_balance_wei - s.gas_reserve_wei + 20 * MILLI
            r = wb.ensure_eth(required, "after-restart", timeout=60)
            assert r.outcome is Outcome.CONVERTED and r.conversions, r
            after_restart = {c.conversion_id for c in r.conversions}
            _wait("the example to see the conversion after the restart", lambda: confirmed(after_restart), 30, proc, logs)
            journal = [e.sequence for e in wb.conversions(after=0, timeout=3)]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        rpc.call("evm_setAutomine", True)
    assert proc.returncode == 0, logs()

    # 4. The audit trail: every event from sequence 1, once, in order.
    audit = [e["sequence"] for e in _json_lines(audit_path)]
    assert audit == list(range(1, len(audit) + 1)), audit
    assert audit == journal, (audit, journal)
    assert "resuming after sequence" in stderr_path.read_text(), logs()
