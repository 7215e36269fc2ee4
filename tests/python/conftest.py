"""Session fixtures of the Python gRPC client tests.

At import (i.e. test-session start) the Python stubs are generated from
proto/ with grpc_tools.protoc into a temporary directory that is put on
sys.path, so tests can ``from walletbalancer.v1 import wallet_balancer_pb2``.

The ``sidecar`` session fixture then starts, on 127.0.0.1 only:

1. ``$WB_DEV_BIN devnet`` (the developer tools' binary ``wb-dev``: anvil +
   the deployed market + the funded wallet), which writes the sidecar config
   and the wallet key into a temp dir;
2. ``$WB_BIN serve --config <that config>``, waited for until gRPC health
   says SERVING for ``walletbalancer.v1.WalletBalancer``, exporting its
   traces to the session's in-process OTLP receiver (``otlp_receiver``);

and yields a :class:`Sidecar` with the gRPC stubs, the RPC URL, the
addresses from the config and a JSON-RPC client. Both processes are stopped
at the end (SIGTERM, then SIGKILL). Their logs are in the temp dir; on a
start-up failure, and on every failing test, their tails are printed.

:func:`start_sidecar` starts another such pair, for tests that need their
own chain (they stop its blocks, restart the sidecar, read its metrics).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Callable

import grpc
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "walletbalancer/v1/wallet_balancer.proto"

CHAIN = "devnet"
CHAIN_ID = 31337
SERVICE_NAME = "walletbalancer.v1.WalletBalancer"

DEVNET_READY_TIMEOUT = 120.0  # anvil start + deployment (+ a cold disk)
SERVING_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# ---------------------------------------------------------------------------
# Stubs, generated once per session
# ---------------------------------------------------------------------------


def _generate_stubs() -> Path:
    import importlib.resources

    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="wb-pystubs-"))
    atexit.register(shutil.rmtree, out, True)
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO_DIR / PROTO_FILE),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed ({rc}): {' '.join(args)}")
    return out


_STUB_DIR = _generate_stubs()
sys.path.insert(0, str(_STUB_DIR))

# Plain assert statements in the shared helper get pytest's detailed messages.
pytest.register_assert_rewrite("status_check")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from walletbalancer.v1 import wallet_balancer_pb2_grpc as pb_grpc  # noqa: E402

from evm_keys import address_from_private_key  # noqa: E402
from evm_rpc import EvmRpc, try_chain_id  # noqa: E402
from otlp_receiver import OtlpReceiver  # noqa: E402


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data[-limit:].decode("utf-8", "replace")
    return ("...\n" if len(data) > limit else "") + text


@dataclass
class _Proc:
    """A child process with its output files."""

    name: str
    popen: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    def logs(self) -> str:
        return (
            f"--- {self.name} stdout ({self.stdout_path}) ---\n{_tail(self.stdout_path)}\n"
            f"--- {self.name} stderr ({self.stderr_path}) ---\n{_tail(self.stderr_path)}"
        )

    def exited(self) -> int | None:
        return self.popen.poll()

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL this process's own process group (it
        was started in a new session, so the group is it and its children,
        e.g. anvil)."""
        p = self.popen
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # leftovers (anvil) of our own group
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.kill()
        p.wait(timeout=STOP_TIMEOUT)


def _spawn(name: str, argv: list[str], workdir: Path, extra_env: dict[str, str] | None = None) -> _Proc:
    stdout_path = workdir / f"{name}.stdout.log"
    stderr_path = workdir / f"{name}.stderr.log"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    env["NO_COLOR"] = "1"
    # The config comes from the command line (and the test's own overrides) only.
    for k in list(env):
        if k == "WB_CONFIG" or k.startswith("WB__"):
            del env[k]
    env.update(extra_env or {})
    with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    return _Proc(name, popen, stdout_path, stderr_path)


def _poll(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    procs: list[_Proc],
    interval: float = 0.1,
) -> Any:
    """Calls `check` until it returns something truthy; fails (with the
    processes' logs) on timeout or when one of `procs` exits."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for p in procs:
            rc = p.exited()
            if rc is not None:
                logs = "\n".join(q.logs() for q in procs)
                pytest.fail(f"{p.name} exited with status {rc} while waiting for {what}\n{logs}", pytrace=False)
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_error = e
        if time.monotonic() > deadline:
            logs = "\n".join(q.logs() for q in procs)
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}"
                f"{f' (last error: {last_error!r})' if last_error else ''}\n{logs}",
                pytrace=False,
            )
        time.sleep(interval)


def _bin(env: str, name: str) -> str:
    """The executable named by ``$env``, else ``target/debug/<name>``."""
    path = os.environ.get(env)
    if not path:
        default = ROOT / "target" / "debug" / name
        if not default.is_file():
            pytest.fail(
                f"{env} is not set and target/debug/{name} does not exist: "
                f"run `cargo build --workspace --bins` and set {env} (scripts/test does)",
                pytrace=False,
            )
        path = str(default)
    resolved = Path(path)
    if not resolved.is_absolute():
        resolved = (Path.cwd() / resolved).resolve()
    if not (resolved.is_file() and os.access(resolved, os.X_OK)):
        pytest.fail(f"{env}={path} is not an executable file", pytrace=False)
    return str(resolved)


def _wb_bin() -> str:
    """The sidecar: the product binary (``serve``)."""
    return _bin("WB_BIN", "wallet-balancer")


def _wb_dev_bin() -> str:
    """The developer tools (``devnet``), crates/dev."""
    return _bin("WB_DEV_BIN", "wb-dev")


# ---------------------------------------------------------------------------
# The fixture object
# ---------------------------------------------------------------------------


@dataclass
class Token:
    """A configured token (from the generated sidecar config)."""

    symbol: str
    address: str
    decimals: int
    usd_feed: str
    min_reserve_usd: str
    priority: int
    approval_reset: bool


@dataclass
class Sidecar:
    """A running devnet + sidecar."""

    channel: grpc.Channel
    stub: pb_grpc.WalletBalancerStub
    health: health_pb2_grpc.HealthStub
    grpc_target: str
    rpc_url: str
    rpc: EvmRpc
    config: dict[str, Any]
    config_path: Path
    key_path: Path
    workdir: Path
    wallet_address: str
    tokens: list[Token]
    procs: list[_Proc] = field(repr=False, default_factory=list)
    #: How the sidecar process was started (for :meth:`restart_sidecar`).
    sidecar_argv: list[str] = field(repr=False, default_factory=list)
    sidecar_env: dict[str, str] = field(repr=False, default_factory=dict)

    def stop_sidecar(self) -> int | None:
        """SIGTERM to the sidecar (a graceful drain); returns its exit status."""
        proc = next(p for p in self.procs if p.name == "sidecar")
        proc.stop()
        return proc.popen.returncode

    def start_sidecar(self) -> None:
        """Starts the sidecar again (same config, journal and environment;
        its logs are appended) and waits until it is SERVING."""
        old = next(p for p in self.procs if p.name == "sidecar")
        assert old.exited() is not None, "the sidecar is still running"
        new = _spawn("sidecar", self.sidecar_argv, self.workdir, self.sidecar_env)
        self.procs[self.procs.index(old)] = new
        _wait_serving(self.health, self.grpc_target, self.procs)

    def restart_sidecar(self) -> int | None:
        """:meth:`stop_sidecar` then :meth:`start_sidecar`; returns the old exit status."""
        rc = self.stop_sidecar()
        self.start_sidecar()
        return rc

    @property
    def chain_config(self) -> dict[str, Any]:
        return self.config["chains"][CHAIN]

    @property
    def policy(self) -> dict[str, Any]:
        return self.config.get("policy", {})

    @property
    def addresses(self) -> dict[str, str]:
        """Every address in the config: the chain's contracts, each token
        (by symbol) and its feed ("<SYMBOL>/USD"), each venue's router
        ("<venue name> router") and quoter; plus the wallet."""
        c = self.chain_config
        out = {k: c[k] for k in ("multicall3", "weth", "eth_usd_feed") if k in c}
        for t in self.tokens:
            out[t.symbol] = t.address
            out[f"{t.symbol}/USD"] = t.usd_feed
        for v in c.get("venues", []):
            for k in ("router", "quoter"):
                if k in v:
                    out[f"{v['name']} {k}"] = v[k]
        out["wallet"] = self.wallet_address
        return out

    @property
    def eth_usd_feed(self) -> str:
        return self.chain_config["eth_usd_feed"]

    @property
    def weth(self) -> str:
        return self.chain_config["weth"]

    def token(self, symbol: str) -> Token:
        for t in self.tokens:
            if t.symbol == symbol:
                return t
        raise KeyError(f"token {symbol} is not configured")

    def logs(self) -> str:
        return "\n".join(p.logs() for p in self.procs)


def _read_config(path: Path) -> dict[str, Any] | None:
    """The config once it is written (the devnet writes it in place: it may
    briefly exist empty), else None."""
    try:
        cfg = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    chain = cfg.get("chains", {}).get(CHAIN, {})
    complete = (
        cfg.get("server", {}).get("listen")
        and cfg.get("wallet", {}).get("private_key_file")
        and chain.get("rpc_urls")
        and chain.get("tokens")
        and chain.get("venues")
    )
    return cfg if complete else None


@pytest.fixture(scope="session")
def otlp_receiver():
    """The OTLP/gRPC collector the sidecar exports its traces to."""
    r = OtlpReceiver()
    try:
        yield r
    finally:
        r.stop()


def _wait_serving(health: health_pb2_grpc.HealthStub, target: str, procs: list[_Proc]) -> None:
    def serving() -> bool:
        try:
            r = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2)
        except grpc.RpcError:
            return False
        return r.status == health_pb2.HealthCheckResponse.SERVING

    _poll(f"gRPC health of {SERVICE_NAME} at {target} to say SERVING", serving, SERVING_TIMEOUT, procs, 0.2)


@contextlib.contextmanager
def start_sidecar(
    workdir: Path, sidecar_env: dict[str, str] | None = None, devnet_args: list[str] | None = None
) -> Iterator[Sidecar]:
    """A devnet (``wb-dev devnet``) and the sidecar serving it, in
    ``workdir``; both stopped on exit. ``sidecar_env``: extra variables of
    the sidecar (``WB__*`` overrides included)."""
    wb = _wb_bin()
    wb_dev = _wb_dev_bin()
    config_path = workdir / "config.toml"
    key_path = workdir / "wallet.key"
    listen = f"127.0.0.1:{_free_port()}"
    procs: list[_Proc] = []
    channel: grpc.Channel | None = None
    try:
        devnet = _spawn(
            "devnet",
            [
                wb_dev,
                "devnet",
                "--config-out",
                str(config_path),
                "--key-out",
                str(key_path),
                "--listen",
                listen,
                *(devnet_args or []),
            ],
            workdir,
        )
        procs.append(devnet)
        config = _poll("the devnet to write its config", lambda: _read_config(config_path), DEVNET_READY_TIMEOUT, procs)
        chain_cfg = config["chains"][CHAIN]
        rpc_url = chain_cfg["rpc_urls"][0]
        assert rpc_url.startswith("http://127.0.0.1:"), f"the devnet RPC is not on loopback: {rpc_url}"
        assert config["server"]["listen"] == listen, f"config listen {config['server']['listen']!r} != {listen!r}"
        _poll(f"anvil at {rpc_url} to answer eth_chainId", lambda: try_chain_id(rpc_url) == CHAIN_ID, 30, procs)
        assert Path(config["wallet"]["private_key_file"]) == key_path, "the config does not read --key-out"
        _poll(f"the wallet key file {key_path}", lambda: key_path.is_file() and key_path.read_text().strip(), 10, procs)

        argv = [wb, "serve", "--config", str(config_path)]
        env = dict(sidecar_env or {})
        server = _spawn("sidecar", argv, workdir, env)
        procs.append(server)
        target = listen
        # Straight to the sidecar: never through a proxy from the environment.
        channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
        health = health_pb2_grpc.HealthStub(channel)
        _wait_serving(health, target, procs)

        tokens = [
            Token(
                symbol=t["symbol"],
                address=t["address"],
                decimals=int(t["decimals"]),
                usd_feed=t["usd_feed"],
                min_reserve_usd=str(t["min_reserve_usd"]),
                priority=int(t.get("priority", 0)),
                approval_reset=bool(t.get("approval_reset", False)),
            )
            for t in chain_cfg["tokens"]
        ]
        yield Sidecar(
            channel=channel,
            stub=pb_grpc.WalletBalancerStub(channel),
            health=health,
            grpc_target=target,
            rpc_url=rpc_url,
            rpc=EvmRpc(rpc_url),
            config=config,
            config_path=config_path,
            key_path=key_path,
            workdir=workdir,
            wallet_address=address_from_private_key(key_path.read_text()),
            tokens=tokens,
            procs=procs,
            sidecar_argv=argv,
            sidecar_env=env,
        )
    finally:
        if channel is not None:
            channel.close()
        # The sidecar first (it talks to anvil), then the devnet (kills anvil).
        errors = []
        for p in reversed(procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                errors.append(f"{p.name} (pid {p.popen.pid}): {e!r}")
        if errors:
            raise RuntimeError(f"could not stop: {'; '.join(errors)}")


@pytest.fixture(scope="session")
def sidecar(tmp_path_factory: pytest.TempPathFactory, otlp_receiver: OtlpReceiver):
    # Traces go to the test's receiver, exported every 200 ms.
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    with start_sidecar(tmp_path_factory.mktemp("sidecar"), otel) as sc:
        yield sc


def pytest_collection_modifyitems(config, items):
    """Read-only tests first, on the fresh devnet wallet; tests marked
    ``sends_transactions`` (test_ensure.py) last, and among them those also
    marked ``after_write_up`` at the very end. Stable otherwise."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("sends_transactions") is not None,
            item.get_closest_marker("after_write_up") is not None,
        )
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        # Every devnet + sidecar the test used (the session's, or its own).
        seen = []
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Sidecar) and value not in seen:
                seen.append(value)
        for sc in seen:
            report.sections.append((f"devnet + sidecar logs ({sc.workdir})", sc.logs()))
    return report
