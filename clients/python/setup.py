"""Build hook: generates the gRPC stubs from the repository's proto/ before
the package is built (pyproject.toml holds the metadata).

The stubs land in ``src/wallet_balancer_client/_proto/`` (git-ignored):
``wallet_balancer_pb2.py`` (+ ``.pyi``) and ``wallet_balancer_pb2_grpc.py``,
whose absolute import of the messages is rewritten to a relative one, so the
package does not claim a top-level ``walletbalancer`` package. The protobuf
file keeps its canonical name (``walletbalancer/v1/wallet_balancer.proto``):
stubs generated elsewhere from the same file share its descriptors.

The proto directory is ``$WB_PROTO_DIR`` when set, else ``../../proto``
(this package lives in ``clients/python`` of the repository). Building from
a tree without it (e.g. an sdist) reuses stubs generated earlier.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = Path(__file__).resolve().parent
PROTO_FILE = "walletbalancer/v1/wallet_balancer.proto"
OUT = HERE / "src" / "wallet_balancer_client" / "_proto"
GENERATED = ("wallet_balancer_pb2.py", "wallet_balancer_pb2.pyi", "wallet_balancer_pb2_grpc.py")


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
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(proto_dir / PROTO_FILE),
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}): {' '.join(args)}")
        src = Path(tmp) / "walletbalancer" / "v1"
        grpc_py = src / "wallet_balancer_pb2_grpc.py"
        text, n = re.subn(
            r"^from walletbalancer\.v1 import wallet_balancer_pb2 as ",
            "from . import wallet_balancer_pb2 as ",
            grpc_py.read_text(),
            flags=re.M,
        )
        if n != 1:
            raise RuntimeError(f"unexpected import layout in the generated {grpc_py.name}")
        grpc_py.write_text(text)
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


setup(cmdclass={"build_py": BuildPyWithStubs, "egg_info": EggInfoWithStubs})
