"""Build hook: generates the gRPC stubs from the repository's proto/ before
the package is built (pyproject.toml holds the metadata).

The stubs land in ``src/wallet_balancer_client/_proto/`` (git-ignored):
``wallet_balancer_pb2.py`` and ``wallet_balancer_pb2_grpc.py`` with their
type stubs (``.pyi``, from mypy-protobuf: typed messages, a typed
``WalletBalancerStub`` and ``WalletBalancerAsyncStub``). Their absolute
imports of the messages are rewritten to relative ones, so the package does
not claim a top-level ``walletbalancer`` package. The protobuf file keeps its
canonical name (``walletbalancer/v1/wallet_balancer.proto``): stubs
generated elsewhere from the same file share its descriptors.

The generator is pinned (pyproject.toml's build requirements): grpcio-tools
1.66.2 writes protobuf 5.27.2 gencode, which every protobuf runtime from
5.27.2 to 7.x loads, and grpc code that needs grpcio >= 1.66.2.

The proto directory is ``$WB_PROTO_DIR`` when set, else ``../../proto``
(this package lives in ``clients/python`` of the repository). Building from
a tree without it (e.g. an sdist) reuses stubs generated earlier.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = Path(__file__).resolve().parent
PROTO_FILE = "walletbalancer/v1/wallet_balancer.proto"
OUT = HERE / "src" / "wallet_balancer_client" / "_proto"
LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")
GENERATED = (
    "wallet_balancer_pb2.py",
    "wallet_balancer_pb2.pyi",
    "wallet_balancer_pb2_grpc.py",
    "wallet_balancer_pb2_grpc.pyi",
)


def _plugin(name: str) -> str:
    """A protoc plugin (a console script of mypy-protobuf) of this build's environment."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: mypy-protobuf is a build requirement (pyproject.toml)")
    return found


def _relative_imports(path: Path, expected: int) -> None:
    """``walletbalancer.v1.wallet_balancer_pb2`` -> the sibling module."""
    text = path.read_text()
    text, n = re.subn(
        r"^from walletbalancer\.v1 import wallet_balancer_pb2 as ",
        "from . import wallet_balancer_pb2 as ",
        text,
        flags=re.M,
    )
    text, m = re.subn(r"^import walletbalancer\.v1\.wallet_balancer_pb2$", "from . import wallet_balancer_pb2", text, flags=re.M)
    text = text.replace("walletbalancer.v1.wallet_balancer_pb2.", "wallet_balancer_pb2.")
    if n + m != expected or re.search(r"^(import|from) walletbalancer", text, flags=re.M):
        raise RuntimeError(f"unexpected import layout in the generated {path.name}")
    path.write_text(text)


def _proto_dir() -> Path | None:
    for candidate in (os.environ.get("WB_PROTO_DIR"), HERE.parent.parent / "proto"):
        if candidate and (Path(candidate) / PROTO_FILE).is_file():
            return Path(candidate)
    return None


def generate_stubs() -> None:
    proto_dir = _proto_dir()
    if proto_dir is None:
        if all((OUT / f).is_file() for f in GENERATED):
            return
        raise RuntimeError(
            f"{PROTO_FILE} not found (set WB_PROTO_DIR, or build from the repository's clients/python)"
        )
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="wb-stubs-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            str(proto_dir / PROTO_FILE),
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}): {' '.join(args)}")
        src = Path(tmp) / "walletbalancer" / "v1"
        _relative_imports(src / "wallet_balancer_pb2_grpc.py", 1)
        _relative_imports(src / "wallet_balancer_pb2_grpc.pyi", 1)
        _relative_imports(src / "wallet_balancer_pb2.pyi", 0)
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        for name in GENERATED:
            shutil.copyfile(src / name, OUT / name)
        (OUT / "__init__.py").write_text(
            '"""Stubs generated from proto/walletbalancer/v1/wallet_balancer.proto at build time."""\n'
        )


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


class EggInfoWithStubs(egg_info):
    # Metadata (pip's first step) lists the package's files: the stubs must exist.
    def run(self) -> None:
        generate_stubs()
        super().run()


def copy_licenses() -> None:
    """The repository's license files, next to pyproject.toml (its
    ``license-files`` cannot reach outside this directory); an sdist
    carries the copies."""
    for name in LICENSES:
        src = HERE.parent.parent / name
        if src.is_file():
            shutil.copyfile(src, HERE / name)
        elif not (HERE / name).is_file():
            raise RuntimeError(f"{name} not found at the repository's root nor here")


copy_licenses()
setup(cmdclass={"build_py": BuildPyWithStubs, "egg_info": EggInfoWithStubs})
