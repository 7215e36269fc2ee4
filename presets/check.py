#!/usr/bin/env python3
"""Check the shipped chain presets (presets/*.toml).

    pip install pycryptodome      # keccak-256; everything else is stdlib
    python3 presets/check.py                  # every presets/*.toml
    python3 presets/check.py presets/base.toml ...

For each file it checks:

* every 0x + 40-hex-digit string anywhere in the file, comments included, is
  written in its EIP-55 checksummed form (all-lower-case is rejected too);
* every key that holds an address (multicall3, weth, eth_usd_feed,
  sequencer_uptime_feed, tokens[].address, tokens[].usd_feed, venues[].router,
  venues[].quoter) holds a well-formed, non-zero address;
* no two roles in one file share an address, except the intended pairs:
  the WETH token's address == `weth`, and the WETH token's usd_feed ==
  `eth_usd_feed` (WETH is priced by the chain's ETH/USD feed);
* the preset shape of docs/config-schema.md: no rpc_urls / preset keys,
  required keys present, fee caps as decimal strings with tip <= max fee,
  exactly one token at the `weth` address, uniswap_v3 venues with a quoter and
  fee tiers.

Exits 0 when every file passes, 1 when any check fails, 2 on usage errors.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

try:
    from Crypto.Hash import keccak
except ImportError:  # pragma: no cover - environment problem, not a preset problem
    sys.stderr.write("check.py needs pycryptodome: pip install pycryptodome\n")
    sys.exit(2)

ADDRESS_IN_TEXT = re.compile(r"0x[0-9a-fA-F]{40}(?![0-9a-fA-F])")
ADDRESS_EXACT = re.compile(r"^0x[0-9a-fA-F]{40}$")
DECIMAL = re.compile(r"^[0-9]+$")

TOP_ADDRESS_KEYS = ("multicall3", "weth", "eth_usd_feed", "sequencer_uptime_feed")
REQUIRED_TOP = ("chain_id", "multicall3", "weth", "eth_usd_feed")
ALLOWED_TOP = {
    "chain_id",
    "multicall3",
    "weth",
    "eth_usd_feed",
    "feed_max_age_secs",
    "sequencer_uptime_feed",
    "sequencer_grace_secs",
    "confirmations",
    "reorg_watch_blocks",
    "block_time_ms",
    "max_fee_per_gas_wei",
    "max_priority_fee_per_gas_wei",
    "rpc_timeout_ms",
    "rpc_retries",
    "tokens",
    "venues",
}
TOKEN_KEYS = {"symbol", "address", "decimals", "usd_feed", "min_reserve_usd", "priority", "approval_reset"}
TOKEN_REQUIRED = TOKEN_KEYS - {"approval_reset"}
VENUE_KEYS = {"kind", "name", "router", "quoter", "fee_tiers"}


def keccak256_hex(data: bytes) -> str:
    h = keccak.new(digest_bits=256)
    h.update(data)
    return h.hexdigest()


def to_checksum(address: str) -> str:
    """EIP-55 form of a 0x-prefixed 20-byte hex address."""
    lower = address[2:].lower()
    digest = keccak256_hex(lower.encode("ascii"))
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)
    )


def self_test() -> None:
    # Test vectors from EIP-55 itself.
    for v in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        if to_checksum(v) != v:
            sys.stderr.write(f"keccak/EIP-55 self-test failed on {v}\n")
            sys.exit(2)


class Report:
    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []

    def err(self, msg: str) -> None:
        self.errors.append(msg)


def check_text_checksums(text: str, rep: Report) -> int:
    n = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in ADDRESS_IN_TEXT.finditer(line):
            n += 1
            a = m.group(0)
            good = to_checksum(a)
            if a != good:
                rep.err(f"line {lineno}: {a} is not EIP-55 checksummed (expected {good})")
    return n


def address_roles(data: dict, rep: Report) -> list[tuple[str, str]]:
    """(role, address) for every address-holding key, validating each."""
    roles: list[tuple[str, str]] = []

    def take(role: str, value) -> None:
        if not isinstance(value, str) or not ADDRESS_EXACT.match(value):
            rep.err(f"{role}: {value!r} is not a 0x-prefixed 20-byte hex address")
            return
        if int(value, 16) == 0:
            rep.err(f"{role}: the zero address is not allowed")
            return
        roles.append((role, value))

    for key in TOP_ADDRESS_KEYS:
        if key in data:
            take(key, data[key])
    for i, t in enumerate(data.get("tokens", [])):
        if not isinstance(t, dict):
            continue
        sym = t.get("symbol", "?")
        for key in ("address", "usd_feed"):
            if key in t:
                take(f"tokens[{i}]({sym}).{key}", t[key])
    for i, v in enumerate(data.get("venues", [])):
        if not isinstance(v, dict):
            continue
        name = v.get("name", "?")
        for key in ("router", "quoter"):
            if key in v:
                take(f"venues[{i}]({name}).{key}", v[key])
    return roles


def check_duplicates(data: dict, roles: list[tuple[str, str]], rep: Report) -> None:
    weth = str(data.get("weth", "")).lower()
    eth_feed = str(data.get("eth_usd_feed", "")).lower()
    weth_token_idx = {
        i for i, t in enumerate(data.get("tokens", [])) if isinstance(t, dict) and str(t.get("address", "")).lower() == weth
    }

    def intended_group(role: str, addr: str) -> str | None:
        a = addr.lower()
        if a == weth and (role == "weth" or any(role.startswith(f"tokens[{i}](") and role.endswith(".address") for i in weth_token_idx)):
            return "weth"
        if a == eth_feed and (
            role == "eth_usd_feed" or any(role.startswith(f"tokens[{i}](") and role.endswith(".usd_feed") for i in weth_token_idx)
        ):
            return "eth_usd_feed"
        return None

    by_addr: dict[str, list[str]] = {}
    for role, addr in roles:
        by_addr.setdefault(addr.lower(), []).append(role)
    for addr, rs in by_addr.items():
        if len(rs) < 2:
            continue
        groups = {intended_group(r, addr) for r in rs}
        if len(groups) == 1 and None not in groups:
            continue  # only the intended duplicates share this address
        rep.err(f"address {to_checksum(addr)} is shared by {', '.join(rs)}")


def check_shape(data: dict, rep: Report) -> None:
    for key in data:
        if key not in ALLOWED_TOP:
            rep.err(f"unexpected top-level key `{key}` (presets never carry rpc_urls or preset)")
    for key in REQUIRED_TOP:
        if key not in data:
            rep.err(f"missing required key `{key}`")
    if not isinstance(data.get("chain_id"), int) or data.get("chain_id", 0) <= 0:
        rep.err("chain_id must be a positive integer")
    for key in ("feed_max_age_secs", "confirmations", "block_time_ms"):
        if key in data and (not isinstance(data[key], int) or data[key] <= 0):
            rep.err(f"{key} must be a positive integer")
    caps = {}
    for key in ("max_fee_per_gas_wei", "max_priority_fee_per_gas_wei"):
        if key in data:
            v = data[key]
            if not isinstance(v, str) or not DECIMAL.match(v):
                rep.err(f"{key} must be a decimal string, got {v!r}")
            else:
                caps[key] = int(v)
    if len(caps) == 2 and caps["max_priority_fee_per_gas_wei"] > caps["max_fee_per_gas_wei"]:
        rep.err("max_priority_fee_per_gas_wei exceeds max_fee_per_gas_wei")

    tokens = data.get("tokens", [])
    weth = str(data.get("weth", "")).lower()
    weth_tokens = 0
    for i, t in enumerate(tokens):
        if not isinstance(t, dict):
            rep.err(f"tokens[{i}] is not a table")
            continue
        for key in TOKEN_REQUIRED - t.keys():
            rep.err(f"tokens[{i}] lacks `{key}`")
        for key in t.keys() - TOKEN_KEYS:
            rep.err(f"tokens[{i}] has unknown key `{key}`")
        if str(t.get("address", "")).lower() == weth:
            weth_tokens += 1
        d = t.get("decimals")
        if not isinstance(d, int) or not 0 <= d <= 36:
            rep.err(f"tokens[{i}].decimals must be an integer 0..36")
        r = t.get("min_reserve_usd")
        if not isinstance(r, str) or not re.match(r"^[0-9]+(\.[0-9]+)?$", r):
            rep.err(f"tokens[{i}].min_reserve_usd must be a decimal string, got {r!r}")
        if "approval_reset" in t and not isinstance(t["approval_reset"], bool):
            rep.err(f"tokens[{i}].approval_reset must be a boolean")
    if tokens and weth_tokens != 1:
        rep.err(f"exactly one token must sit at the `weth` address, found {weth_tokens}")

    for i, v in enumerate(data.get("venues", [])):
        if not isinstance(v, dict):
            rep.err(f"venues[{i}] is not a table")
            continue
        for key in v.keys() - VENUE_KEYS:
            rep.err(f"venues[{i}] has unknown key `{key}`")
        for key in ("kind", "name", "router"):
            if key not in v:
                rep.err(f"venues[{i}] lacks `{key}`")
        kind = v.get("kind")
        if kind == "uniswap_v3":
            if "quoter" not in v:
                rep.err(f"venues[{i}] (uniswap_v3) lacks `quoter`")
            tiers = v.get("fee_tiers", [])
            if not tiers or not all(isinstance(f, int) and 0 < f < 1_000_000 for f in tiers):
                rep.err(f"venues[{i}] (uniswap_v3) needs fee_tiers in 1..999999")
        elif kind == "uniswap_v2":
            if "quoter" in v or "fee_tiers" in v:
                rep.err(f"venues[{i}] (uniswap_v2) takes no quoter / fee_tiers")
        else:
            rep.err(f"venues[{i}].kind {kind!r} is not uniswap_v2 or uniswap_v3")


def check_file(path: Path) -> Report:
    rep = Report(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        rep.err(f"cannot read: {e}")
        return rep
    n = check_text_checksums(text, rep)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        rep.err(f"not valid TOML: {e}")
        return rep
    roles = address_roles(data, rep)
    check_duplicates(data, roles, rep)
    check_shape(data, rep)
    rep.summary = f"{len(roles)} address roles, {n} addresses in text"  # type: ignore[attr-defined]
    return rep


def main(argv: list[str]) -> int:
    self_test()
    if argv:
        files = [Path(a) for a in argv]
    else:
        files = sorted(Path(__file__).resolve().parent.glob("*.toml"))
    if not files:
        sys.stderr.write("no preset files found\n")
        return 2
    failed = 0
    for f in files:
        rep = check_file(f)
        if rep.errors:
            failed += 1
            print(f"FAIL {f}")
            for e in rep.errors:
                print(f"  - {e}")
        else:
            print(f"ok   {f} ({getattr(rep, 'summary', '')})")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
