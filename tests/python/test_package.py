"""The client package as users get it: its built wheel and sdist, each
installed into a clean venv (scripts/test makes them, listed in
``$WB_CLEAN_VENVS``), one with protobuf 5.x and one with 7.x, call the
running sidecar with the sync and the asyncio client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CHAIN = "devnet"

SCRIPT = """
import asyncio, sys, warnings
warnings.simplefilter("error")  # a gencode/runtime version warning fails too
import google.protobuf
import wallet_balancer_client as wbc
from wallet_balancer_client._proto import wallet_balancer_pb2
assert "site-packages" in wbc.__file__, wbc.__file__
target, chain = sys.argv[1], sys.argv[2]
with wbc.WalletBalancer(target, chain=chain) as wb:
    s = wb.status()
    assert s.chain == chain and s.chain_id == 31337, s
async def main():
    async with wbc.AsyncWalletBalancer(target, chain=chain) as wb:
        r = await wb.ensure_eth(10**15, timeout=10)
        assert r.outcome is wbc.Outcome.SUFFICIENT, r
asyncio.run(main())
print("protobuf", google.protobuf.__version__)
"""


def _venvs() -> list[Path]:
    listed = os.environ.get("WB_CLEAN_VENVS", "")
    if not listed:
        pytest.skip("WB_CLEAN_VENVS is not set: scripts/test builds the clean venvs")
    return [Path(p) for p in listed.split(":") if p]


@pytest.mark.parametrize("major", ["5", "7"])
def test_the_built_package_works_in_a_clean_venv(sidecar, major):
    venv = next((v for v in _venvs() if v.name.endswith(f"protobuf{major}")), None)
    assert venv is not None, f"no clean venv with protobuf {major} in $WB_CLEAN_VENVS"
    p = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SCRIPT, sidecar.grpc_target, CHAIN],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=venv,  # nothing of the repository on sys.path
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(f"protobuf {major}."), p.stdout
