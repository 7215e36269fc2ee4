"""The built image, run: its own rootfs, its own user, no shell.

Run by scripts/test-image after scripts/build-image (``WB_IMAGE_ID``, the
buildah storage in ``WB_IMAGE_STORAGE``). Each command runs inside the
image's root filesystem with ``buildah run --isolation chroot`` (no
runtime daemon, the host's network: the devnet is on 127.0.0.1), as the
image's user unless a test says otherwise, never on the host binary.

The scenario is the Kubernetes pod's (deploy/k8s): the key arrives as a
Secret file readable by the pod's group (mode 0440, as kubelet mounts it
under an fsGroup), mounted read-only; ``install-secret`` copies it to
the key volume with mode 0400; ``serve`` reads it from there (read-only
too), with the config from a read-only mount and the journal on a
writable one; health says SERVING and one GetStatus answers for the
devnet's wallet.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import wallet_balancer_client as wbc

ROOT = Path(__file__).resolve().parents[2]
UID = 10001
SERVICE_NAME = "walletbalancer.v1.WalletBalancer"
KEY = "/run/wallet-balancer/key/private-key"


def _version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]["version"]


def _image() -> str:
    image = os.environ.get("WB_IMAGE_ID")
    if not image:
        pytest.fail("WB_IMAGE_ID is not set: run scripts/test-image (after scripts/build-image)")
    return image


def _buildah(*args: str, **kw) -> subprocess.CompletedProcess:
    storage = os.environ.get("WB_IMAGE_STORAGE", str(ROOT / ".image" / "storage"))
    run = os.environ.get("WB_IMAGE_RUNROOT", str(ROOT / ".image" / "run"))
    argv = ["buildah", "--storage-driver", "vfs", "--root", storage, "--runroot", run, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Container:
    """A buildah working container of the image."""

    def __init__(self, image: str) -> None:
        r = _buildah("from", "--pull-never", image)
        assert r.returncode == 0, r.stderr
        self.name = r.stdout.strip()

    def argv(self, *cmd: str, mounts: list[str] = (), user: str | None = None) -> list[str]:
        storage = os.environ.get("WB_IMAGE_STORAGE", str(ROOT / ".image" / "storage"))
        runroot = os.environ.get("WB_IMAGE_RUNROOT", str(ROOT / ".image" / "run"))
        argv = ["buildah", "--storage-driver", "vfs", "--root", storage, "--runroot", runroot]
        argv += ["run", "--isolation", "chroot"]
        if user:
            argv += ["--user", user]
        for m in mounts:
            argv += ["--volume", m]
        return [*argv, self.name, "--", *cmd]

    def run(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*cmd, **kw), capture_output=True, text=True, timeout=60)

    def remove(self) -> None:
        _buildah("rm", self.name)


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    c = Container(_image())
    yield c
    c.remove()


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def _poll(what: str, check, timeout: float, procs: list[tuple[str, subprocess.Popen, Path]]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p, log in procs:
            if p.poll() is not None:
                pytest.fail(f"{name} exited ({p.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        v = check()
        if v:
            return v
        time.sleep(0.3)
    logs = "\n".join(f"--- {n} ---\n{log.read_text()[-4000:]}" for n, _, log in procs)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def test_version_and_no_shell(container: Container) -> None:
    r = container.run("/usr/local/bin/wallet-balancer", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wallet-balancer {_version()}"
    for shell in ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/bin/busybox"):
        r = container.run(shell, "-c", "true")
        assert r.returncode != 0, f"{shell} ran in the image"


def test_serves_the_devnet_with_a_read_only_key(container: Container, tmp_path_factory) -> None:
    work = Path(tempfile.mkdtemp(prefix="wb-image-"))
    os.chmod(work, 0o755)
    procs: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        listen = f"127.0.0.1:{_free_port()}"
        health_port = _free_port()
        devnet_dir = work / "devnet"
        devnet_dir.mkdir()
        devnet_log = work / "devnet.log"
        wb_dev = os.environ.get("WB_DEV_BIN", str(ROOT / "target" / "debug" / "wb-dev"))
        devnet = subprocess.Popen(
            [wb_dev, "devnet", "--config-out", str(devnet_dir / "config.toml"),
             "--key-out", str(devnet_dir / "wallet.key"), "--listen", listen],
            cwd=ROOT, stdout=devnet_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(("devnet", devnet, devnet_log))

        def config():
            try:
                text = (devnet_dir / "config.toml").read_text()
                return tomllib.loads(text) if "[chains.devnet]" in text else None
            except (OSError, tomllib.TOMLDecodeError):
                return None

        _poll("the devnet's config", config, 180, procs)
        _poll("the devnet's key", lambda: (devnet_dir / "wallet.key").is_file(), 30, procs)
        wallet_key = (devnet_dir / "wallet.key").read_text().strip()

        # The Secret as kubelet mounts it under fsGroup 10001: root-owned,
        # group-readable; mounted read-only into the container.
        secret = work / "secret"
        secret.mkdir()
        (secret / "private-key").write_text(wallet_key + "\n")
        os.chown(secret / "private-key", 0, UID)
        os.chmod(secret / "private-key", 0o440)
        # The key volume (an emptyDir) and the journal volume (a PVC).
        keyvol = work / "key"
        journal = work / "journal"
        for d in (keyvol, journal):
            d.mkdir()
            os.chown(d, UID, UID)
            os.chmod(d, 0o700)

        # The sidecar's config: the devnet's, with the pod's paths.
        cfg = (devnet_dir / "config.toml").read_text()
        etc = work / "etc"
        etc.mkdir()
        cfg_lines = []
        section = ""
        for line in cfg.splitlines():
            s = line.strip()
            if s.startswith("["):
                section = s
            if section == "[wallet]" and s.startswith("private_key_file"):
                line = f'private_key_file = "{KEY}"'
            if section == "[journal]" and s.startswith("path"):
                line = 'path = "/var/lib/wallet-balancer/journal.redb"'
            cfg_lines.append(line)
            if s == "[server]":
                cfg_lines.append(f'health_listen = "127.0.0.1:{health_port}"')
        (etc / "config.toml").write_text("\n".join(cfg_lines) + "\n")
        os.chmod(etc / "config.toml", 0o644)
        assert tomllib.loads((etc / "config.toml").read_text())["wallet"]["private_key_file"] == KEY

        # 1. The init container: install-secret, as the sidecar's user.
        r = container.run(
            "/usr/local/bin/wallet-balancer", "install-secret", "/secrets/wallet/private-key", KEY,
            mounts=[f"{secret}:/secrets/wallet:ro", f"{keyvol}:/run/wallet-balancer/key"],
            user=f"{UID}:{UID}",
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert wallet_key[2:] not in r.stdout + r.stderr
        st = (keyvol / "private-key").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (UID, 0o400), r.stdout

        # 2. The sidecar, as the image's own user (no --user given).
        sidecar_log = work / "sidecar.log"
        argv = container.argv(
            "/usr/local/bin/wallet-balancer", "serve", "--config", "/etc/wallet-balancer/config.toml",
            mounts=[f"{keyvol}:/run/wallet-balancer/key:ro", f"{etc}:/etc/wallet-balancer:ro",
                    f"{journal}:/var/lib/wallet-balancer"],
        )
        sidecar = subprocess.Popen(argv, stdout=sidecar_log.open("w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        procs.append(("sidecar (in the image)", sidecar, sidecar_log))

        channel = grpc.insecure_channel(f"127.0.0.1:{health_port}")
        health = health_pb2_grpc.HealthStub(channel)

        def serving():
            try:
                return health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2).status \
                    == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        _poll("health SERVING", serving, 120, procs)
        channel.close()

        with wbc.WalletBalancer(listen, chain="devnet", timeout=30) as client:
            status = client.status()
        assert status.chain_id == 31337
        assert status.block_number > 0
        assert status.eth_balance_wei > 0
        assert len(status.tokens) > 0

        # The same GetStatus from inside the image, with its own CLI.
        r = container.run("/usr/local/bin/wallet-balancer", "status", "--chain", "devnet",
                          "--addr", listen, "--output", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["wallet_address"] == status.wallet_address

        # The sidecar wrote its journal as the image's user.
        assert (journal / "journal.redb").stat().st_uid == UID
    finally:
        for _, p, _ in reversed(procs):
            _stop(p)
        shutil.rmtree(work, ignore_errors=True)
