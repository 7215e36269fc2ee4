"""A tiny Ethereum JSON-RPC client (urllib + json only) and the few ABI
encodings the tests need, hand-rolled: the test client has no web3.

Every read takes a block tag so a test can read the chain at exactly the
block the sidecar reported (``block_tag(n)``), not at whatever is latest.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# 4-byte function selectors (keccak256 of the signature, first 4 bytes).
SEL_BALANCE_OF = "70a08231"  # balanceOf(address)
SEL_LATEST_ROUND_DATA = "feaf968c"  # latestRoundData()
SEL_DECIMALS = "313ce567"  # decimals()
SEL_OWNER = "8da5cb5b"  # owner()
SEL_UPDATE_ANSWER = "a87a20ce"  # updateAnswer(int256) (the devnet's MockAggregatorV3)


class RpcError(Exception):
    """A JSON-RPC error response (the node answered, with an error)."""

    def __init__(self, method: str, error: dict[str, Any]):
        self.method = method
        self.code = error.get("code")
        self.rpc_message = error.get("message")
        self.data = error.get("data")
        super().__init__(f"{method}: JSON-RPC error {self.code}: {self.rpc_message} {self.data or ''}".rstrip())


def block_tag(block: int | str) -> str:
    """A JSON-RPC block parameter: ints become quantities, strings
    ("latest", "pending", "0x10") pass through."""
    if isinstance(block, bool):
        raise TypeError("block must be an int or a tag string")
    if isinstance(block, int):
        if block < 0:
            raise ValueError(f"negative block number {block}")
        return hex(block)
    return block


def quantity(value: str) -> int:
    """Decodes a JSON-RPC quantity ("0x1a") into an int."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not a JSON-RPC quantity: {value!r}")
    return int(value, 16)


def encode_address(address: str) -> str:
    """An address as one 32-byte ABI word (hex, no 0x)."""
    h = address.lower().removeprefix("0x")
    if len(h) != 40:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return h.rjust(64, "0")


def encode_int256(value: int) -> str:
    """A signed integer as one 32-byte two's-complement ABI word (hex, no 0x)."""
    if not -(2**255) <= value < 2**255:
        raise ValueError(f"{value} does not fit in int256")
    return (value % 2**256).to_bytes(32, "big").hex()


def decode_words(data: str) -> list[bytes]:
    """Splits 0x-hex return data into 32-byte words."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    if len(raw) % 32:
        raise ValueError(f"return data is not whole words: {len(raw)} bytes")
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def uint(word: bytes) -> int:
    return int.from_bytes(word, "big")


def int256(word: bytes) -> int:
    return int.from_bytes(word, "big", signed=True)


@dataclass(frozen=True)
class RoundData:
    """AggregatorV3Interface.latestRoundData()."""

    round_id: int
    answer: int
    started_at: int
    updated_at: int
    answered_in_round: int


class EvmRpc:
    """Blocking JSON-RPC over HTTP to one node."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)
        # Straight to the node: never through an http_proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        ).encode()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with self._opener.open(req, timeout=self.timeout) as resp:
            answer = json.loads(resp.read())
        if "error" in answer and answer["error"] is not None:
            raise RpcError(method, answer["error"])
        if "result" not in answer:
            raise RpcError(method, {"code": None, "message": f"no result in {answer!r}"})
        return answer["result"]

    # -- plain reads --------------------------------------------------------

    def chain_id(self) -> int:
        return quantity(self.call("eth_chainId"))

    def block_number(self) -> int:
        return quantity(self.call("eth_blockNumber"))

    def get_block(self, block: int | str, full_transactions: bool = False) -> dict[str, Any]:
        b = self.call("eth_getBlockByNumber", block_tag(block), full_transactions)
        if b is None:
            raise LookupError(f"block {block!r} not found")
        return b

    def get_balance(self, address: str, block: int | str = "latest") -> int:
        return quantity(self.call("eth_getBalance", address, block_tag(block)))

    def get_transaction_count(self, address: str, block: int | str = "latest") -> int:
        return quantity(self.call("eth_getTransactionCount", address, block_tag(block)))

    def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self.call("eth_getTransactionReceipt", tx_hash)

    def get_transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return self.call("eth_getTransactionByHash", tx_hash)

    def eth_call(self, to: str, data_hex: str, block: int | str = "latest") -> str:
        return self.call("eth_call", {"to": to, "data": "0x" + data_hex.removeprefix("0x")}, block_tag(block))

    def send_transaction(self, sender: str, to: str, data_hex: str, timeout: float = 30.0) -> dict[str, Any]:
        """eth_sendTransaction from an account the node holds unlocked (anvil's
        dev accounts); polls for the receipt and returns it."""
        tx_hash = self.call("eth_sendTransaction", {"from": sender, "to": to, "data": "0x" + data_hex.removeprefix("0x")})
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.get_transaction_receipt(tx_hash)
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash} after {timeout}s")
            time.sleep(0.05)

    # -- contract reads (hand-encoded calldata) -----------------------------

    def owner(self, contract: str, block: int | str = "latest") -> str:
        words = decode_words(self.eth_call(contract, SEL_OWNER, block))
        if len(words) != 1:
            raise ValueError(f"owner returned {len(words)} words")
        return "0x" + words[0][-20:].hex()

    def erc20_balance_of(self, token: str, owner: str, block: int | str = "latest") -> int:
        words = decode_words(self.eth_call(token, SEL_BALANCE_OF + encode_address(owner), block))
        if len(words) != 1:
            raise ValueError(f"balanceOf returned {len(words)} words")
        return uint(words[0])

    def decimals(self, contract: str, block: int | str = "latest") -> int:
        """decimals() of an ERC-20 or an AggregatorV3 feed (both uint8)."""
        words = decode_words(self.eth_call(contract, SEL_DECIMALS, block))
        if len(words) != 1:
            raise ValueError(f"decimals returned {len(words)} words")
        value = uint(words[0])
        if value > 255:
            raise ValueError(f"decimals() is not a uint8: {value}")
        return value

    def latest_round_data(self, feed: str, block: int | str = "latest") -> RoundData:
        words = decode_words(self.eth_call(feed, SEL_LATEST_ROUND_DATA, block))
        if len(words) != 5:
            raise ValueError(f"latestRoundData returned {len(words)} words")
        return RoundData(
            round_id=uint(words[0]),
            answer=int256(words[1]),
            started_at=uint(words[2]),
            updated_at=uint(words[3]),
            answered_in_round=uint(words[4]),
        )


def try_chain_id(url: str, timeout: float = 2.0) -> int | None:
    """eth_chainId, or None when nothing (or garbage) answers."""
    try:
        return EvmRpc(url, timeout=timeout).chain_id()
    except (OSError, urllib.error.URLError, ValueError, RpcError):
        return None
