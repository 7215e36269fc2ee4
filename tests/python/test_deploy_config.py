"""The Kubernetes ConfigMap's config (deploy/k8s/components/wallet-balancer/config.toml) against
the real binary, the way the pod runs it: the file as shipped, with only the
pod's paths and ports moved by WB__ environment overrides (as the pod
moves the RPC URLs). The server must accept it, serve health alone on the
health listener, keep the API on loopback, and refuse a key file that a
Secret volume under an fsGroup would leave group-readable (the reason for the
wallet-balancer-install-key init container). No devnet: the RPC endpoint is a dead port, so
health stays NOT_SERVING.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wallet_balancer_client import Unavailable, WalletBalancer, WalletBalancerError

ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG = ROOT / "deploy" / "k8s" / "components" / "wallet-balancer" / "config.toml"
# anvil's well-known test key #1 (no value anywhere).
TEST_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
EXIT_CONFIG = 64


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wb_bin() -> str:
    path = os.environ.get("WB_BIN") or str(ROOT / "target" / "debug" / "wallet-balancer")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no wallet-balancer binary at {path}: set WB_BIN (scripts/test does)", pytrace=False)
    return str(Path(path).resolve())


def _start(tmp_path: Path, key_mode: int) -> tuple[subprocess.Popen, int, int, Path]:
    key = tmp_path / "private-key"
    key.write_text(TEST_KEY + "\n")
    key.chmod(key_mode)
    api, health = _port(), _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WB")}
    env.update(
        {
            "NO_COLOR": "1",
            "WB__SERVER__LISTEN": f"127.0.0.1:{api}",
            "WB__SERVER__HEALTH_LISTEN": f"127.0.0.1:{health}",
            "WB__TELEMETRY__METRICS_LISTEN": f"127.0.0.1:{_port()}",
            "WB__WALLET__PRIVATE_KEY_FILE": str(key),
            "WB__JOURNAL__PATH": str(tmp_path / "journal.redb"),
            "WB__CHAINS__ARBITRUM__RPC_URLS": f'["http://127.0.0.1:{_port()}"]',
        }
    )
    log = tmp_path / "sidecar.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(
            [_wb_bin(), "serve", "--config", str(CONFIG)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return p, api, health, log


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_the_shipped_config_runs_with_health_alone_on_its_listener(tmp_path):
    p, api, health, log = _start(tmp_path, 0o400)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{health}", options=[("grpc.enable_http_proxy", 0)])
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        status = None
        while status is None:
            assert p.poll() is None, f"serve exited with {p.returncode}:\n{log.read_text()}"
            try:
                status = stub.Check(
                    health_pb2.HealthCheckRequest(service="walletbalancer.v1.WalletBalancer"), timeout=2
                ).status
            except grpc.RpcError:
                assert time.monotonic() < deadline, f"health listener never answered:\n{log.read_text()}"
                time.sleep(0.2)
        # The RPC endpoint is dead: not ready (and kubelet's readiness probe agrees).
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING

        # The health listener serves nothing but health.
        with WalletBalancer(channel, chain="arbitrum", retries=0, timeout=5) as on_health:
            with pytest.raises(WalletBalancerError) as e:
                on_health.status()
            assert e.value.code == grpc.StatusCode.UNIMPLEMENTED
        channel.close()

        # The API answers on loopback (UNAVAILABLE: no RPC endpoint answers).
        with WalletBalancer(f"127.0.0.1:{api}", chain="arbitrum", retries=0, timeout=10) as wb:
            with pytest.raises(Unavailable):
                wb.status()
    finally:
        _stop(p)


def test_a_group_readable_key_file_is_refused(tmp_path):
    # A Secret volume's defaultMode 0400 becomes 0440 under the pod's fsGroup.
    p, *_, log = _start(tmp_path, 0o440)
    try:
        assert p.wait(timeout=30) == EXIT_CONFIG, log.read_text()
    finally:
        _stop(p)
    assert "readable by group" in log.read_text()
